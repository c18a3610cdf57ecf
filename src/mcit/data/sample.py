"""The unit of data: one instruction, its answer, and an optional image."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from PIL import Image


@dataclass(frozen=True)
class Sample:
    """One single-turn instruction sample.

    Attributes:
        id: Unique id within its dataset (used for buffers, selection and resume).
        prompt: The user's instruction, without the image placeholder.
        answer: The target answer the model is trained to produce.
        image: The image, or ``None`` for a text-only sample.
        references: Accepted answers for scoring; ``(answer,)`` when empty.
        skill: Hidden skill label (evaluation only; never shown to selectors).
    """

    id: str
    prompt: str
    answer: str
    image: Image.Image | None = None
    references: tuple[str, ...] = field(default=())
    skill: str = ""

    @property
    def targets(self) -> tuple[str, ...]:
        return self.references or (self.answer,)


@dataclass(frozen=True)
class Task:
    """One step of a continual stream: training data, held-out evaluation data, scorer.

    Attributes:
        name: Task name, unique in the stream (a column of the accuracy matrix).
        train: Training samples (empty for evaluation-only tasks).
        eval: Held-out evaluation samples.
        scorer: Name of the scorer in :data:`mcit.evaluation.scorers.SCORERS`.
        max_new_tokens: Generation budget for answers of this task.
    """

    name: str
    train: Sequence[Sample]
    eval: Sequence[Sample]
    scorer: str = "exact_norm"
    max_new_tokens: int = 8


SampleLookup = Callable[[str, str], Sample]
"""``lookup(task, sample_id)``: a training sample of a step the run has reached, by id.

Strategies keep references (task name and sample id) in their checkpointed state, never
pixels, and materialise them through the lookup the runner puts in their context; it
refuses a step the run has not reached, so no strategy can read a future task's data.
"""


class SampleGroups:
    """Samples grouped by task, checkpointed as references and re-read after a restore.

    In a running process the groups hold the stream's own sample objects (no copies);
    :meth:`state_dict` holds each sample's id under its task name; after
    :meth:`load_state_dict` the first :meth:`get` materialises them through the run's
    :data:`SampleLookup`. A checkpoint therefore stays a few kilobytes however large the
    images are.
    """

    def __init__(self) -> None:
        self._groups: dict[str, list[Sample]] = {}
        self._restored: dict[str, list[str]] | None = None

    def get(self, lookup: SampleLookup | None = None) -> dict[str, list[Sample]]:
        """The groups, in insertion (task) order.

        Raises:
            RuntimeError: If restored from a checkpoint and no ``lookup`` is given.
        """
        if self._restored is not None:
            if lookup is None:
                raise RuntimeError("samples restored from a checkpoint need the run's sample lookup to be read")
            self._groups = {task: [lookup(task, i) for i in ids] for task, ids in self._restored.items()}
            self._restored = None
        return self._groups

    def set(self, groups: dict[str, list[Sample]]) -> None:
        self._groups, self._restored = groups, None

    def state_dict(self) -> dict[str, list[str]]:
        if self._restored is not None:
            return {task: list(ids) for task, ids in self._restored.items()}
        return {task: [sample.id for sample in samples] for task, samples in self._groups.items()}

    def load_state_dict(self, state: dict[str, list[str]]) -> None:
        self._groups = {}
        self._restored = {task: [str(i) for i in ids] for task, ids in state.items()}
