"""Run the embedded default stream with several methods and print markdown tables.

Usage: .venv/bin/python experiments/default_stream.py [--methods seqft,er,joint] [--out runs/bench]

Each method runs in its own run directory (resumed if it exists), so the matrices printed
are those in results.json. "wall s" is this invocation's time for the method, base stage
included (so it is ~0 for a directory that was already complete); "stream s" is the
training + evaluation time of the stream recorded in results.json. Timings are only
comparable within one invocation on an otherwise idle machine. "state KB" is the size of
the strategy state in the last task checkpoint (its JSON plus any tensors): replay buffers
and joint's past data are sample references, so it stays small.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mcit.config import load_config
from mcit.runner import Runner
from mcit.state_tree import state_part_bytes
from mcit.store import STEP_PREFIX

KEYS = ("final_average_accuracy", "mean_finetune_accuracy", "mean_average_accuracy", "average_forgetting",
        "backward_transfer", "forward_transfer")


def pct(value: float) -> str:
    return f"{100 * value:.1f}"


def matrix_markdown(results: dict) -> str:
    names = results["tasks"] + results["eval_only"]
    header = [f"{n}*" if n in results["eval_only"] else n for n in names]
    lines = ["| after | " + " | ".join(header) + " |", "|---" * (len(names) + 1) + "|"]
    lines.append("| zero-shot | " + " | ".join(pct(results["zero_shot"][n]) for n in names) + " |")
    for row in results["rows"]:
        lines.append(f"| {row['after']} | " + " | ".join(pct(row["scores"][n]) for n in names) + " |")
    return "\n".join(lines)


def strategy_state_bytes(run_dir: Path, tasks: int) -> int:
    """Bytes of the strategy state in the final checkpoint: its JSON plus its tensors."""
    return state_part_bytes(run_dir / "checkpoints" / f"{STEP_PREFIX}{tasks:03d}", "strategy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="seqft,er,joint")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()
    summary = []
    for method in args.methods.split(","):
        config = load_config(None, [f"method=[{method}]"])
        start = time.perf_counter()
        results = Runner(config, args.out / method).run()
        wall = time.perf_counter() - start
        stream_seconds = sum(r["train_seconds"] + r["eval_seconds"] for r in results["rows"])
        print(f"\n### {method}\n\n{matrix_markdown(results)}\n")
        language = ", ".join(f"{n} {pct(e['forgetting'])}" for n, e in results["language"].items())
        state_kb = strategy_state_bytes(args.out / method, len(results["rows"])) / 1024
        summary.append((method, results["metrics"], language, stream_seconds, wall, state_kb))
    print("| method | " + " | ".join(KEYS) + " | language forgetting | stream s | wall s | state KB |")
    print("|---" * (len(KEYS) + 5) + "|")
    for method, metrics, language, stream_seconds, wall, state_kb in summary:
        cells = " | ".join(pct(metrics[k]) for k in KEYS)
        print(f"| {method} | {cells} | {language} | {stream_seconds:.0f} | {wall:.0f} | {state_kb:.1f} |")


if __name__ == "__main__":
    main()
