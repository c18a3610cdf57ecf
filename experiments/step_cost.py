"""Training-step cost of every method relative to seqft, measured side by side in one run.

Usage: .venv/bin/python experiments/step_cost.py [--methods ...] [--steps 40] [--repeats 3]
       [--threads 2] [--clock wall|cpu]

For each method: a fresh copy of the same tiny model trains task 1 (color) with the method's
hooks (so buffers, anchors and importances exist), then trains task 2 (count) for a fixed
number of steps with the same seed, so step k sees the same batch for every method (but
er, whose replay changes the batches). The task-2 runs of all methods are interleaved step
by step: each method's training loop runs in its own thread and they take turns, one step
each, so a burst of background load slows neighbouring steps of every method alike. Each
step is timed (hooks included: loss, after_backward, data mixing), the first of each run
left out (one-off allocations); a method's time per step is its mean over steps and
``--repeats`` rounds (a mean, not a median: DGG guides only a random fifth of the steps),
compared with seqft's. ``after_task`` costs (Fisher, MAS importance) are reported
separately (median over rounds).

``--clock cpu`` times the steps with the CPU time of the thread that runs them instead of
the wall clock: time spent waiting for a core that other jobs hold is then not counted.
Use it with ``--threads 1`` (with more threads, torch's worker threads do part of the work
and their time is not counted).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import threading
import time
from collections.abc import Callable

import torch

from mcit.config import load_config
from mcit.data.collate import Collator
from mcit.data.synthetic.tasks import TASKS, corpus
from mcit.errors import UserError
from mcit.models.hf import configure_trainable
from mcit.models.tiny import build_tiny_vlm
from mcit.run_setup import build_strategy
from mcit.strategies import STRATEGIES, Context, StrategyChain, TaskView
from mcit.training.loop import train
from mcit.training.settings import TrainConfig


def prepare(name: str, base_model, collator, tasks, steps: int, batch_size: int) -> tuple[Callable, float]:
    """Train task 1 with method ``name``; returns (task 2's training as a function of the
    progress callback, seconds of task 1's after_task)."""
    # The model as a run of this method gets it: its trainable parts, the peft LoRA adapter the
    # method asks for (lora, msgm), and what the method builds itself (olora's, moelora's and
    # eproj's modules).
    # A method a run would refuse alone (dgg needs a replay provider) is timed alone all the same.
    try:
        config = load_config(None, [f"method=[{name}]"])
        strategy = build_strategy(config)
    except UserError:
        config = load_config(None, [])
        strategy_class = STRATEGIES.get(name)
        strategy = StrategyChain([(name, strategy_class(strategy_class.options_class()))])
    model = configure_trainable(copy.deepcopy(base_model), config.model.trainable, config.model.lora)
    model = strategy.setup_model(model, config.seed)
    (first_name, first), (second_name, second) = tasks
    ctx = Context(model, TaskView(0, first_name, first), 0, torch.device("cpu"), collator)
    strategy.before_task(ctx)
    train(ctx, strategy.train_data(ctx, first), strategy, TrainConfig(epochs=1, batch_size=batch_size))
    start = time.perf_counter()
    strategy.after_task(ctx)
    after_task_seconds = time.perf_counter() - start
    ctx = Context(model, TaskView(1, second_name, second), 1, torch.device("cpu"), collator)
    strategy.before_task(ctx)
    data = list(strategy.train_data(ctx, second))
    settings = TrainConfig(epochs=steps * batch_size / len(data), batch_size=batch_size)
    return (lambda on_step: train(ctx, data, strategy, settings, on_step)), after_task_seconds


def interleaved(runs: list[Callable], clock: Callable[[], float]) -> list[list[float]]:
    """Run the training functions ``runs`` in turns of one step each; seconds of each step."""
    turns = [threading.Event() for _ in runs]
    finished = [False] * len(runs)
    lock = threading.Lock()
    times: list[list[float]] = [[] for _ in runs]
    failures: list[BaseException] = []

    def pass_turn(index: int) -> None:
        with lock:
            for offset in range(1, len(runs) + 1):
                following = (index + offset) % len(runs)
                if not finished[following]:
                    turns[following].set()
                    return

    def worker(index: int) -> None:
        turns[index].wait()
        turns[index].clear()
        started = [clock()]

        def on_step(*_) -> None:
            times[index].append(clock() - started[0])
            pass_turn(index)
            turns[index].wait()
            turns[index].clear()
            started[0] = clock()

        try:
            runs[index](on_step)
        except BaseException as error:  # reported by the main thread
            failures.append(error)
        finally:
            with lock:
                finished[index] = True
            pass_turn(index)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(runs))]
    for thread in threads:
        thread.start()
    turns[0].set()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(n for n in STRATEGIES.names() if n != "joint"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of interleaved runs")
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="see the module docstring")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, processor = build_tiny_vlm(corpus())
    collator = Collator(processor)
    tasks = [(n, TASKS.get(n).generate(args.samples, 0, "train")) for n in ("color", "count")]
    methods = args.methods.split(",")
    if "seqft" not in methods:
        methods.insert(0, "seqft")
    clock = time.perf_counter if args.clock == "wall" else time.thread_time
    step_times: dict[str, list[float]] = {m: [] for m in methods}
    after_task: dict[str, list[float]] = {m: [] for m in methods}
    for repeat in range(args.repeats):
        order = methods[repeat % len(methods):] + methods[: repeat % len(methods)]  # rotate who goes first
        runs = []
        for name in order:
            run, finish = prepare(name, model, collator, tasks, args.steps, args.batch_size)
            runs.append(run)
            after_task[name].append(finish)
        for name, times in zip(order, interleaved(runs, clock)):
            step_times[name].extend(times[1:])
    reference = statistics.fmean(step_times["seqft"])
    print(
        f"tiny model, batch {args.batch_size}, {args.steps} steps x {args.repeats} rounds interleaved step by step, "
        f"{args.threads} thread(s), {args.clock} clock"
    )
    print("| method | ms / step (mean) | ratio to seqft | after_task s (median) |")
    print("|---|---|---|---|")
    for name in methods:
        mean = statistics.fmean(step_times[name])
        print(f"| {name} | {1000 * mean:.1f} | {mean / reference:.2f} | {statistics.median(after_task[name]):.2f} |")


if __name__ == "__main__":
    main()
