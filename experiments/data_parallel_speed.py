"""One process against two data-parallel processes on the same cores, side by side.

Usage: .venv/bin/python experiments/data_parallel_speed.py [--rounds 2] [--out runs/data-parallel-speed]
       [key=value ...]   (overrides of the run; default: 3 tasks of 800 samples, no base stage)

Runs the same stream with one process of ``--threads`` threads and with ``accelerate launch
--config_file configs/accelerate/ddp-cpu.yaml`` (two processes of ``--threads / 2`` threads
each), alternately, ``--rounds`` times each (order flipped every round, so drifting load hits
both alike). Prints training samples/s and evaluation seconds (from each run's results) and
the ratio of the medians (two processes / one). On a CPU the two processes share the same
cores, so the ratio says what the gradient all-reduce and the per-step bookkeeping cost, not
what a second device gains.
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


def one_run(out: Path, processes: int, threads: int, overrides: list[str]) -> tuple[float, float]:
    """(training samples/s, evaluation seconds) of one run into ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    args = ["run", *DEFAULTS, *overrides, f"threads={threads}", "--out", str(out)]
    if processes == 1:
        command = [sys.executable, "-m", "mcit", *args]
    else:
        config = ROOT / "configs" / "accelerate" / "ddp-cpu.yaml"
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
    parser.add_argument("--out", type=Path, default=Path("runs/data-parallel-speed"))
    args, overrides = parser.parse_known_args()
    measured: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    for round_index in range(args.rounds):
        order = (1, 2) if round_index % 2 == 0 else (2, 1)
        for processes in order:
            threads = args.threads if processes == 1 else max(1, args.threads // 2)
            speed, evaluation = one_run(args.out / f"p{processes}", processes, threads, overrides)
            measured[processes].append((speed, evaluation))
            print(f"round {round_index + 1}: {processes} process(es) x {threads} thread(s): "
                  f"{speed:7.1f} training samples/s, evaluation {evaluation:5.1f} s", flush=True)  # fmt: skip
    speed = {p: statistics.median(s for s, _ in runs) for p, runs in measured.items()}
    evaluation = {p: statistics.median(e for _, e in runs) for p, runs in measured.items()}
    print(f"median training samples/s: one process {speed[1]:.1f}, two processes {speed[2]:.1f}; "
          f"two / one = {speed[2] / speed[1]:.3f}")  # fmt: skip
    print(f"median evaluation seconds: one process {evaluation[1]:.1f}, two processes {evaluation[2]:.1f}; "
          f"one / two = {evaluation[1] / evaluation[2]:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
