"""One process against two processes, data parallel and FSDP2, on the same cores, side by side.

Usage: .venv/bin/python experiments/data_parallel_speed.py [--rounds 2] [--engines ddp,fsdp]
       [--out runs/data-parallel-speed] [key=value ...]   (overrides of the run; default: 3 tasks
       of 800 samples, no base stage)

Runs the same stream with one process of ``--threads`` threads and with ``accelerate launch``
of ``configs/accelerate/ddp-cpu.yaml`` and of ``fsdp-cpu.yaml`` (two processes of ``--threads
/ 2`` threads each), in turn, ``--rounds`` times each (the order reversed every round, so
drifting load hits all alike). Prints training samples/s and evaluation seconds (from each
run's results) and the ratios of the medians (two processes / one). On a CPU the two
processes share the same cores, so a ratio says what the collectives and the per-step
bookkeeping cost, not what a second device gains.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = [
    "benchmark.tasks=[color,count,shape]", "benchmark.eval_only=[arithmetic]", "benchmark.train_per_task=800",
    "benchmark.eval_per_task=100", "benchmark.base=null", "train.epochs=1",
]  # fmt: skip


ENGINES = {"ddp": "ddp-cpu.yaml", "fsdp": "fsdp-cpu.yaml"}


def one_run(out: Path, engine: str | None, threads: int, overrides: list[str]) -> tuple[float, float]:
    """(training samples/s, evaluation seconds) of one run into ``out``: one process (``engine`` None) or two."""
    shutil.rmtree(out, ignore_errors=True)
    args = ["run", *DEFAULTS, *overrides, f"threads={threads}", "--out", str(out)]
    if engine is None:
        command = [sys.executable, "-m", "mcit", *args]
    else:
        config = ROOT / "configs" / "accelerate" / ENGINES[engine]
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "-m", "mcit", *args]
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    samples = sum(r["train_samples"] for r in rows)
    return samples / sum(r["train_seconds"] for r in rows), sum(r["eval_seconds"] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--engines", default="ddp,fsdp", help="Two-process engines to time against one process.")
    parser.add_argument("--out", type=Path, default=Path("runs/data-parallel-speed"))
    args, overrides = parser.parse_known_args()
    arms: list[str | None] = [None, *args.engines.split(",")]
    measured: dict[str | None, list[tuple[float, float]]] = {arm: [] for arm in arms}
    for round_index in range(args.rounds):
        for arm in arms if round_index % 2 == 0 else arms[::-1]:
            threads = args.threads if arm is None else max(1, args.threads // 2)
            speed, evaluation = one_run(args.out / (arm or "one"), arm, threads, overrides)
            measured[arm].append((speed, evaluation))
            label = "1 process" if arm is None else f"2 processes ({arm})"
            print(f"round {round_index + 1}: {label} x {threads} thread(s): "
                  f"{speed:7.1f} training samples/s, evaluation {evaluation:5.1f} s", flush=True)  # fmt: skip
    speed = {arm: statistics.median(s for s, _ in runs) for arm, runs in measured.items()}
    evaluation = {arm: statistics.median(e for _, e in runs) for arm, runs in measured.items()}
    for arm in arms[1:]:
        print(f"median training samples/s: one process {speed[None]:.1f}, two processes ({arm}) {speed[arm]:.1f}; "
              f"two / one = {speed[arm] / speed[None]:.3f}")  # fmt: skip
        print(f"median evaluation seconds: one process {evaluation[None]:.1f}, two processes ({arm}) {evaluation[arm]:.1f}; "
              f"one / two = {evaluation[None] / evaluation[arm]:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
