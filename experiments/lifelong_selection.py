"""Selection quality on the embedded lifelong stream: every selector, 3 seeds, one budget.

Usage: .venv/bin/python experiments/lifelong_selection.py [--seeds 0,1,2] [--budget 400]
       [--per-dataset 600] [--out runs/lifelong-bench] [--only lamp,random] [--set key=value]

Rows (LAMP's table): sequential (newest dataset only), random experience replay
(sequential + er), random pool selection, each single score + CCS, semdedup, density,
coincide, lamp and lite. Columns: relative gain (final skill score / the best score the
sequential run of the same seed reached on that skill, x100), LAMP's forgetting rate, final
average accuracy over skills, selection seconds per step, and the cost ratio
selection time per pool sample / training time per trained sample. Mean +- std over seeds.

Every run of a seed starts from the same base model (the sequential run's base stage), so
the rows differ only in what they train on. Runs resume from their directories.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from mcit import metrics
from mcit.config import load_config
from mcit.runner import Runner

ROWS = {
    "sequential": ("sequential", "seqft"),
    "random replay": ("sequential", "er"),
    "random": ("random", "seqft"),
    "perplexity": ("perplexity", "seqft"),
    "image_grounding": ("image_grounding", "seqft"),
    "el2n": ("el2n", "seqft"),
    "entropy": ("entropy", "seqft"),
    "semdedup": ("semdedup", "seqft"),
    "density": ("density", "seqft"),
    "coincide": ("coincide", "seqft"),
    "lamp": ("lamp", "seqft"),
    "lite": ("lite", "seqft"),
    # Ablations, to look into why LAMP does or does not beat random selection (--only ...).
    "lamp hidden": ("lamp:vectors=hidden", "seqft"),
    "lamp density": ("lamp:budget_rule=density", "seqft"),
    "lamp k5-10": ("lamp:k_grid=[5, 6, 7, 8, 9, 10]", "seqft"),
    # LAMP's k-means before stop 30: on the full-width vectors, 3 restarts for every k of the grid.
    "lamp full-width": ("lamp:cluster_dim=null;k_search_restarts=3", "seqft"),
}
DEFAULT_ROWS = [r for r in ROWS if " " not in r or r == "random replay"]


def overrides(args, seed: int, selector: str, method: str, base: Path | None) -> list[str]:
    selector, _, option = selector.partition(":")
    values = [
        "scenario=pool", f"seed={seed}", f"benchmark.train_per_task={args.per_dataset}",
        f"benchmark.eval_per_task={args.eval_per_skill}", f"pool.budget={args.budget}",
        f"pool.selector={selector}", f"method=[{method}]",
    ]
    if selector in ("lamp", "lite"):
        extra = "".join(f", {pair.replace('=', ': ', 1)}" for pair in option.split(";") if pair)
        values.append(f"pool.selector={{name: {selector}, dim: {args.dim}{extra}}}")
    if selector == "lite":
        values.append(f"pool.pool_budget={args.pool_budget}")
    if method == "er":
        values.append(f"method=[{{name: er, buffer_per_task: {args.budget // 10}}}]")
    if base is not None:
        values += [f"model.name={base}", "benchmark.base=null"]
    return values + args.set


def spread(values: list[float]) -> str:
    values = [v for v in values if v == v]
    if not values:
        return "-"
    deviation = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {deviation:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--budget", type=int, default=400)
    parser.add_argument("--per-dataset", type=int, default=600)
    parser.add_argument("--eval-per-skill", type=int, default=100)
    parser.add_argument("--pool-budget", type=int, default=1500)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=Path("runs/lifelong-bench"))
    parser.add_argument("--only", default="", help="comma-separated row names (sequential always runs)")
    parser.add_argument("--set", action="append", default=[], help="extra key=value override for every run")
    args = parser.parse_args()
    rows = [r for r in ROWS if (r in args.only.split(",") if args.only else r in DEFAULT_ROWS) or r == "sequential"]
    table: dict[str, dict[str, list[float]]] = {r: {} for r in rows}
    for seed in (int(s) for s in args.seeds.split(",")):
        sequential_dir = args.out / f"seed{seed}" / "sequential"
        base = None
        for row in rows:
            selector, method = ROWS[row]
            config = load_config(None, overrides(args, seed, selector, method, base))
            start = time.perf_counter()
            results = Runner(config, args.out / f"seed{seed}" / row.replace(" ", "-")).run()
            wall = time.perf_counter() - start
            if row == "sequential":
                base = sequential_dir / "base_model"
                upper = metrics.upper_bounds(results["skills"], results["rows"])
            final = results["rows"][-1]["scores"]
            per_sample_select = sum(r["selection_seconds"] for r in results["rows"]) / sum(r["pool_size"] for r in results["rows"])
            per_sample_train = sum(r["train_seconds"] for r in results["rows"]) / sum(r["train_samples"] for r in results["rows"])
            gain = metrics.relative_gain(final, upper)
            if gain.skipped_skills:
                print(f"seed {seed} {row}: relative gain leaves out skills with a zero upper bound: "
                      f"{', '.join(gain.skipped_skills)}", flush=True)
            values = {
                "relative gain": gain.percent,
                "forgetting rate": results["metrics"]["forgetting_rate"],
                "average accuracy": 100 * results["metrics"]["final_average_accuracy"],
                "selection s/step": sum(r["selection_seconds"] for r in results["rows"]) / len(results["rows"]),
                "select/train per sample": per_sample_select / per_sample_train,
                "wall s": wall,
            }
            for key, value in values.items():
                table[row].setdefault(key, []).append(value)
            print(f"seed {seed} {row}: " + ", ".join(f"{k} {v:.2f}" for k, v in values.items()), flush=True)
    keys = list(next(iter(table.values())).keys())
    print("\n| selection | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for row in rows:
        print(f"| {row} | " + " | ".join(spread(table[row][k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
