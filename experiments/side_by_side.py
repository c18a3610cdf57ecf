"""Two runs on one machine: wall time of a run alone and of two started together, per thread setting.

Usage: .venv/bin/python experiments/side_by_side.py [--settings 2,1,auto] [--rounds 1] [ARG=VALUE ...]

Each setting is a ``threads=`` value given to ``mcit run`` (``auto``: the option left out, so
the run takes its default), optionally with ``:passive`` appended to start the runs with
``OMP_WAIT_POLICY=PASSIVE`` (OpenMP's idle threads sleep at once instead of spinning), or
``:NAME=VALUE`` for another variable of the runs' environment (``2:GOMP_SPINCOUNT=1000``). For each
setting the same short stream runs once alone, then twice at the same moment (two processes,
separate run directories); the table prints each time and the ratio of the pair's slower run
to the run alone. Two runs that share the cores perfectly take 2x (or less, where one run
cannot use every core). Run it on an otherwise idle machine: other jobs change both numbers.

Extra ``ARG=VALUE`` arguments are passed to every run (after the short stream's own).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A short stream with a short base stage: training and evaluation as a run does them, in about a minute.
SHORT = [
    "benchmark.tasks=[color,count]", "benchmark.train_per_task=480", "benchmark.eval_per_task=64",
    "benchmark.base.samples_per_task=200", "benchmark.base.train.epochs=1", "train.epochs=1",
]  # fmt: skip


def command(setting: str, out: Path, extra: list[str]) -> tuple[list[str], dict[str, str]]:
    threads, _, variable = setting.partition(":")
    arguments = [str(Path(sys.executable).parent / "mcit"), "run", *SHORT, *extra, f"--out={out}"]
    if threads != "auto":
        arguments.append(f"threads={threads}")
    environment = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    if variable == "passive":
        environment["OMP_WAIT_POLICY"] = "PASSIVE"
    elif variable:
        name, _, value = variable.partition("=")
        environment[name] = value
    return arguments, environment


def timed(runs: list[tuple[list[str], dict[str, str]]]) -> list[float]:
    """Start every run at once; the seconds each took (raises if one fails)."""
    start = time.perf_counter()
    processes = [subprocess.Popen(a, env=e, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for a, e in runs]
    seconds = []
    for process in processes:
        output, _ = process.communicate()
        seconds.append(time.perf_counter() - start)
        if process.returncode != 0:
            raise SystemExit(f"a run failed ({process.returncode}):\n{output[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", default="2,2:passive,1,auto", help="comma-separated thread settings (see the docstring)")
    parser.add_argument("--rounds", type=int, default=1, help="alone/pair rounds per setting (the mean is printed)")
    args, extra = parser.parse_known_args()
    scratch = Path(tempfile.mkdtemp(prefix="side_by_side_"))
    print(f"{os.cpu_count()} cores; short stream: {' '.join(SHORT)} {' '.join(extra)}")
    print(f"{'setting':<12} {'alone s':>8} {'pair s':>8} {'pair/alone':>10}")
    try:
        for setting in args.settings.split(","):
            alone, pair = 0.0, 0.0
            for round_ in range(args.rounds):
                directory = scratch / f"{setting.replace(':', '-')}-{round_}"
                alone += timed([command(setting, directory / "alone", extra)])[0]
                pair += max(timed([command(setting, directory / f"pair{i}", extra) for i in range(2)]))
                shutil.rmtree(directory)
            alone, pair = alone / args.rounds, pair / args.rounds
            print(f"{setting:<12} {alone:>8.1f} {pair:>8.1f} {pair / alone:>10.2f}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
