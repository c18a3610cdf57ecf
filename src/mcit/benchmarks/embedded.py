"""The embedded stream: procedurally generated tasks, deterministic from the seed."""

from __future__ import annotations

from mcit.benchmarks.base import BENCHMARKS, Benchmark, Stream
from mcit.data.sample import Task
from mcit.data.synthetic.tasks import LANGUAGE_SKILLS, TASKS, corpus


def _task(name: str, train: int, evaluation: int, seed: int) -> Task:
    spec = TASKS.get(name)
    return Task(
        name,
        spec.generate(train, seed, "train") if train else [],
        spec.generate(evaluation, seed, "eval"),
        scorer="exact_norm",
        max_new_tokens=spec.max_new_tokens,
        language_kind=spec.language_kind,
    )


def embedded(config, seed: int) -> Stream:
    """Pillow-drawn visual tasks in shifting styles plus text-only NLU and NLG skills (offline, seconds on CPU)."""
    tasks = [_task(n, config.train_per_task, config.eval_per_task, seed) for n in config.tasks]
    eval_only = [_task(n, 0, config.eval_per_task, seed) for n in config.eval_only]
    base_train = None
    if config.base is not None:
        base_train = [
            sample
            for name in config.base.tasks
            for sample in TASKS.get(name).generate(config.base.samples(name), seed, "base")
        ]
    return Stream(tasks, eval_only, base_train, corpus())


BENCHMARKS.register("embedded", help="Pillow-drawn visual tasks in shifting styles plus text-only NLU and NLG skills (offline, seconds on CPU)")(
    Benchmark(
        embedded, "stream", ["color", "count", "code", "shape", "caption"], list(LANGUAGE_SKILLS),
        task_names=TASKS, eval_names=TASKS, base_names=TASKS, default_sizes=(2000, 200),
    )
)
