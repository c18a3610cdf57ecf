"""A stream: optional base-stage data, the ordered tasks, and evaluation-only tasks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mcit.data.sample import Sample, Task
from mcit.errors import UserError
from mcit.registry import Registry


@dataclass(frozen=True)
class Stream:
    """What a run goes through.

    Attributes:
        tasks: Tasks trained one after another (columns 0..T-1 of the matrix).
        eval_only: Tasks evaluated after every step but never trained (extra columns).
        base_train: Training data of the joint base stage, or ``None`` for no base stage.
        corpus: Text for training a tiny model's tokenizer on this stream.
    """

    tasks: list[Task]
    eval_only: list[Task]
    base_train: list[Sample] | None
    corpus: list[str]

    @property
    def columns(self) -> list[Task]:
        return self.tasks + self.eval_only


BENCHMARKS: Registry[Callable[..., Stream]] = Registry("benchmark")


def build_stream(config, seed: int) -> Stream:
    """Build the stream named by ``config.name`` (a :class:`mcit.config.BenchmarkConfig`).

    Raises:
        UserError: If a task has no training samples (stream tasks) or no evaluation
            samples (any task), so the run stops before any training, not at that task.
    """
    stream = BENCHMARKS.get(config.name)(config, seed)
    validate_stream(stream, config.name)
    return stream


def validate_stream(stream: Stream, benchmark: str) -> None:
    """Refuse empty tasks up front, naming the benchmark and the task."""
    for task in stream.tasks:
        if not task.train:
            raise UserError(f"benchmark {benchmark!r}: task {task.name!r} has no training samples")
    for task in stream.columns:
        if not task.eval:
            raise UserError(f"benchmark {benchmark!r}: task {task.name!r} has no evaluation samples")
