"""Check that the default stream learns every task, for several seeds and thread counts.

Usage: .venv/bin/python experiments/default_robustness.py [--seeds 0,1,2,3,4] [--threads 1,2]
       [--out runs/robustness] [--min 0.90] [key=value ...]

Runs the default config (``mcit run`` with no arguments; seqft unless ``method=[...]`` is
given) once per (seed, threads), each in its own run directory ``OUT/seed<S>-threads<T>``
(resumed if it exists, so "wall s" is ~0 for a directory that was already complete; a
directory made with other overrides is refused: use another --out). Extra ``key=value``
arguments are config overrides applied to every run (e.g. ``train.epochs=4``).

Prints one markdown row per run: the diagonal of the accuracy matrix (each task's score
right after training it), its minimum, final average accuracy, average forgetting and the
run's wall time; then the range of each over the runs. Runs one after another: on a small
machine, parallel runs would only share the cores. Exit status 1 if any diagonal entry is
below ``--min``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mcit.config import load_config
from mcit.runner import Runner


def pct(value: float) -> str:
    return f"{100 * value:.1f}"


def ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def run_one(seed: int, threads: int, overrides: list[str], out: Path) -> dict:
    config = load_config(None, [f"seed={seed}", f"threads={threads}", *overrides])
    start = time.perf_counter()
    results = Runner(config, out / f"seed{seed}-threads{threads}").run()
    wall = time.perf_counter() - start
    diagonal = {row["after"]: row["scores"][row["after"]] for row in results["rows"]}
    return {
        "seed": seed,
        "threads": threads,
        "tasks": results["tasks"],
        "diagonal": diagonal,
        "min": min(diagonal.values()),
        "final": results["metrics"]["final_average_accuracy"],
        "forgetting": results["metrics"]["average_forgetting"],
        "wall": wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=ints, default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=ints, default=[1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/robustness"))
    parser.add_argument("--min", type=float, default=0.90, help="Smallest acceptable diagonal entry (fraction).")
    parser.add_argument("overrides", nargs="*", help="Config overrides key=value, applied to every run.")
    args = parser.parse_args()

    rows = []
    for seed in args.seeds:
        for threads in args.threads:
            row = run_one(seed, threads, args.overrides, args.out)
            rows.append(row)
            diagonal = " ".join(f"{name} {pct(v)}" for name, v in row["diagonal"].items())
            print(f"seed {seed} threads {threads}: {diagonal}; final {pct(row['final'])}, "
                  f"forgetting {pct(row['forgetting'])}, {row['wall']:.0f} s", file=sys.stderr, flush=True)

    tasks = rows[0]["tasks"]
    print(f"\noverrides: {' '.join(args.overrides) or '(none)'}\n")
    print("| seed | threads | " + " | ".join(tasks) + " | min diag | final acc | forgetting | wall s |")
    print("|---" * (len(tasks) + 6) + "|")
    for row in rows:
        cells = " | ".join(pct(row["diagonal"][name]) for name in tasks)
        print(f"| {row['seed']} | {row['threads']} | {cells} | {pct(row['min'])} | {pct(row['final'])} "
              f"| {pct(row['forgetting'])} | {row['wall']:.0f} |")
    for key, label in (("min", "min diagonal"), ("final", "final acc"), ("forgetting", "forgetting")):
        values = [row[key] for row in rows]
        print(f"\n{label}: {pct(min(values))} - {pct(max(values))}", end="")
    walls = [row["wall"] for row in rows]
    print(f"\nwall s: {min(walls):.0f} - {max(walls):.0f}")

    failures = [(row["seed"], row["threads"], name, v) for row in rows for name, v in row["diagonal"].items()
                if v < args.min]
    for seed, threads, name, value in failures:
        print(f"FAIL seed {seed} threads {threads}: {name} {pct(value)} < {pct(args.min)}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
