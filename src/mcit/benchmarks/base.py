"""A stream: optional base-stage data, the ordered tasks, and evaluation-only tasks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mcit.data.sample import Sample, Task
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
    """Build the stream named by ``config.name`` (a :class:`mcit.config.BenchmarkConfig`)."""
    return BENCHMARKS.get(config.name)(config, seed)
