"""What a run goes through: a task stream or a lifelong data pool, and their validation.

A benchmark is registered as a :class:`Benchmark`: which kind of data it builds, its default
task list, the names its tasks may take (checked by ``mcit validate`` before any data is
built) and the function that builds its data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class Benchmark:
    """A registered benchmark.

    Attributes:
        build: ``build(config, seed)`` returns the :class:`Stream` or :class:`PoolStream`
            (``config`` is a :class:`mcit.config.BenchmarkConfig`).
        builds: ``"stream"`` (a :class:`Stream`) or ``"pool"`` (a :class:`PoolStream`): what
            ``build`` returns, so the config can tell which scenarios can run it.
        default_tasks: The stream's tasks (the pool's datasets) when the config gives none.
        default_eval_only: Evaluation-only tasks when the config gives none.
        task_names: Names ``tasks`` may hold (a registry, so a typo gets "did you mean").
        eval_names: Names ``eval_only`` may hold.
        base_names: Names the base stage's ``tasks`` may hold; ``None``: the benchmark has
            no base-stage data (the stream starts from the model as loaded).
        default_sizes: ``(train_per_task, eval_per_task)`` when the config gives none;
            ``None`` means every sample.
        check: ``check(config)`` for a benchmark whose tasks are not registered names (e.g.
            data files): raises ``UserError`` naming the first bad task, without reading data.
    """

    build: Callable[..., Stream | PoolStream]
    builds: str
    default_tasks: list = field(default_factory=list)
    default_eval_only: list = field(default_factory=list)
    task_names: Registry | None = None
    eval_names: Registry | None = None
    base_names: Registry | None = None
    default_sizes: tuple[int | None, int | None] = (None, None)
    check: Callable[..., None] | None = None

    def check_tasks(self, config) -> None:
        """Refuse an unknown or malformed task without building any data.

        Raises:
            UserError: Naming the first bad task (and, for names, the valid ones).
        """
        if self.check is not None:
            self.check(config)
            return
        for entry in config.tasks + config.eval_only:
            if not isinstance(entry, str):
                raise UserError(
                    f"benchmark {config.name!r} takes task names, not data files (got {entry.name!r}); "
                    "for your own files use benchmark name 'files' (a stream) or 'pool_files' (a pool)"
                )
        base = config.base.tasks if config.base is not None else []
        for names, registry in ((config.tasks, self.task_names), (config.eval_only, self.eval_names), (base, self.base_names)):
            if registry is not None:
                for name in names:
                    registry.get(name)


BENCHMARKS: Registry[Benchmark] = Registry("benchmark")


def build_stream(config, seed: int) -> Stream | PoolStream:
    """Build the data of the benchmark named by ``config.name`` (a :class:`mcit.config.BenchmarkConfig`).

    Raises:
        UserError: If a task has no training samples (stream tasks) or no evaluation
            samples (any column), so the run stops before any training, not at that task.
    """
    stream = BENCHMARKS.get(config.name).build(config, seed)
    validate_stream(stream, config.name)
    return stream


def validate_stream(stream: Stream | PoolStream, benchmark: str) -> None:
    """Refuse empty tasks and ambiguous sample ids up front, naming the benchmark and the task.

    Sample ids must be unique within a stream task (replay buffers refer to samples by task
    and id) and across the whole pool of a pool benchmark (the pool refers to them by id).
    """
    trained = stream.tasks if isinstance(stream, Stream) else stream.datasets
    columns = stream.tasks + stream.eval_only if isinstance(stream, Stream) else stream.skills
    for task in trained:
        if not task.train:
            raise UserError(f"benchmark {benchmark!r}: task {task.name!r} has no training samples")
    for task in columns:
        if not task.eval:
            raise UserError(f"benchmark {benchmark!r}: task {task.name!r} has no evaluation samples")
    groups = [[s.id for s in task.train] for task in trained]
    if isinstance(stream, PoolStream):
        groups = [[i for group in groups for i in group]]
    for ids in groups:
        if len(set(ids)) != len(ids):
            repeated = Counter(ids).most_common(1)[0][0]
            where = "the pool" if isinstance(stream, PoolStream) else "one task"
            raise UserError(f"benchmark {benchmark!r}: sample id {repeated!r} occurs more than once in {where}")
