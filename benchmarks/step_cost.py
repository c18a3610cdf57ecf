"""Training-step cost of every method relative to seqft, measured side by side in one run.

Usage: .venv/bin/python benchmarks/step_cost.py [--methods ...] [--steps 40] [--repeats 3]

For each method: a fresh copy of the same tiny model trains task 1 (color) with the method's
hooks (so buffers, anchors and importances exist), then trains task 2 (count) for a fixed
number of steps with the same seed; the time per step of task 2 (hooks included: loss,
after_backward, data mixing) is compared with seqft's. Methods are run in an interleaved
order, ``--repeats`` times, and the median per-step time is used, so background load hits
all methods alike. ``after_task`` costs (Fisher, MAS importance) are reported separately.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from mcit.data.collate import Collator
from mcit.data.synthetic.tasks import TASKS, corpus
from mcit.models.tiny import build_tiny_vlm
from mcit.strategies import STRATEGIES, Context, TaskView
from mcit.training.loop import TrainSettings, train


def run_method(name: str, base_model, collator, tasks, steps: int, batch_size: int) -> tuple[float, float]:
    """Returns (seconds per step on task 2, seconds of task 1's after_task)."""
    model = copy.deepcopy(base_model)
    strategy_class = STRATEGIES.get(name)
    strategy = strategy_class(strategy_class.options_class())
    (first_name, first), (second_name, second) = tasks
    ctx = Context(model, TaskView(0, first_name, first), 0, torch.device("cpu"), collator)
    strategy.before_task(ctx)
    train(ctx, strategy.train_data(ctx, first), strategy, TrainSettings(epochs=1, batch_size=batch_size))
    start = time.perf_counter()
    strategy.after_task(ctx)
    after_task_seconds = time.perf_counter() - start
    ctx = Context(model, TaskView(1, second_name, second), 1, torch.device("cpu"), collator)
    strategy.before_task(ctx)
    data = list(strategy.train_data(ctx, second))
    epochs = steps * batch_size / len(data)
    stats = train(ctx, data, strategy, TrainSettings(epochs=epochs, batch_size=batch_size))
    return stats.seconds / stats.steps, after_task_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(n for n in STRATEGIES.names() if n != "joint"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=400)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model, processor = build_tiny_vlm(corpus())
    collator = Collator(processor)
    tasks = [(n, TASKS.get(n).generate(args.samples, 0, "train")) for n in ("color", "count")]
    methods = args.methods.split(",")
    if "seqft" not in methods:
        methods.insert(0, "seqft")
    per_step: dict[str, list[float]] = {m: [] for m in methods}
    after_task: dict[str, list[float]] = {m: [] for m in methods}
    for repeat in range(args.repeats):
        order = methods[repeat % len(methods):] + methods[: repeat % len(methods)]  # rotate to spread drift
        for name in order:
            step, finish = run_method(name, model, collator, tasks, args.steps, args.batch_size)
            per_step[name].append(step)
            after_task[name].append(finish)
    reference = statistics.median(per_step["seqft"])
    print(f"tiny model, batch {args.batch_size}, {args.steps} steps x {args.repeats} repeats, 2 threads")
    print("| method | ms / step (median) | ratio to seqft | after_task s (median) |")
    print("|---|---|---|---|")
    for name in methods:
        median = statistics.median(per_step[name])
        print(f"| {name} | {1000 * median:.1f} | {median / reference:.2f} | {statistics.median(after_task[name]):.2f} |")


if __name__ == "__main__":
    main()
