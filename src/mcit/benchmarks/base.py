"""What a run goes through: a task stream or a lifelong data pool, and their validation."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from mcit.data.sample import Sample, Task
from mcit.errors import UserError
from mcit.registry import Registry


@dataclass(frozen=True)
class Stream:
    """A task stream (MCIT scenario).

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


@dataclass(frozen=True)
class PoolStream:
    """A lifelong data pool (LiIT scenario): datasets join a pool; skills are evaluated.

    Attributes:
        datasets: Datasets in arrival order (``train`` holds the samples; ``eval`` is empty).
            Their samples carry a hidden ``skill`` that only evaluation reads.
        skills: One evaluation-only task per skill (the columns of the matrix).
        base_train: Training data of the joint base stage, or ``None``.
        corpus: Text for training a tiny model's tokenizer.
    """

    datasets: list[Task]
    skills: list[Task]
    base_train: list[Sample] | None
    corpus: list[str]

    @property
    def tasks(self) -> list[Task]:
        """The steps (rows of the matrix), named like the task stream's for shared code."""
        return self.datasets

    @property
    def eval_only(self) -> list[Task]:
        return self.skills

    @property
    def columns(self) -> list[Task]:
        return self.skills


BENCHMARKS: Registry[Callable[..., Stream | PoolStream]] = Registry("benchmark")


def scenario_of(name: str) -> str:
    """'stream' or 'pool': what the benchmark ``name`` builds."""
    return getattr(BENCHMARKS.get(name), "scenario", "stream")


def build_stream(config, seed: int) -> Stream | PoolStream:
    """Build the stream named by ``config.name`` (a :class:`mcit.config.BenchmarkConfig`).

    Raises:
        UserError: If a task has no training samples (stream tasks) or no evaluation
            samples (any column), so the run stops before any training, not at that task.
    """
    stream = BENCHMARKS.get(config.name)(config, seed)
    validate_stream(stream, config.name)
    return stream


def validate_stream(stream: Stream | PoolStream, benchmark: str) -> None:
    """Refuse empty tasks up front, naming the benchmark and the task."""
    for task in stream.tasks:
        if not task.train:
            raise UserError(f"benchmark {benchmark!r}: task {task.name!r} has no training samples")
    for task in stream.columns:
        if not task.eval:
            raise UserError(f"benchmark {benchmark!r}: task {task.name!r} has no evaluation samples")
    ids = [s.id for task in stream.tasks for s in task.train]
    if isinstance(stream, PoolStream) and len(set(ids)) != len(ids):
        repeated = Counter(ids).most_common(1)[0][0]
        raise UserError(f"benchmark {benchmark!r}: sample id {repeated!r} occurs in more than one place of the pool")
