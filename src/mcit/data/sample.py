"""The unit of data: a conversation (one or more turns), its images, and the answer to learn."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from PIL import Image

from mcit.data.images import ImageRef, StoredImage

IMAGE_MARKER = "<image>"
"""Where an image goes in a user turn's text (LLaVA's placeholder); see :class:`Sample`."""
LANGUAGE_KINDS = ("nlu", "nlg")
"""Kinds of text-only skill whose forgetting is reported apart (Srivastava et al.): language
understanding (the answer is one of a few options the prompt names) and generation (an open
answer string); see :attr:`Task.language_kind`."""


@dataclass(frozen=True)
class Sample:
    """One instruction sample: a conversation whose last assistant turn is the answer.

    Attributes:
        id: Unique id within its dataset (used for buffers, selection and resume).
        prompt: The last user turn's text.
        answer: The last assistant turn: the target (training) or the reference (evaluation).
        images: The sample's images, in order (decoded, or files decoded when a batch is
            collated); empty for a text-only sample.
        references: Accepted answers for scoring; ``(answer,)`` when empty.
        skill: Hidden skill label (evaluation only; never shown to selectors).
        history: Earlier ``(user, assistant)`` turns, oldest first. Training labels every
            assistant turn (as LLaVA trains); evaluation gives the history as context and
            generates the last answer.

    Images go where a user turn's text holds :data:`IMAGE_MARKER` (one marker per image,
    in order); when no turn holds a marker, all images go before the first user turn's
    text. The collator turns markers into the model's own image tokens through its chat
    template.
    """

    id: str
    prompt: str
    answer: str
    images: tuple[Image.Image | ImageRef | StoredImage, ...] = ()
    references: tuple[str, ...] = field(default=())
    skill: str = ""
    history: tuple[tuple[str, str], ...] = ()

    @property
    def image(self) -> Image.Image | ImageRef | StoredImage | None:
        """The first image, or ``None`` for a text-only sample."""
        return self.images[0] if self.images else None

    @property
    def targets(self) -> tuple[str, ...]:
        return self.references or (self.answer,)

    @property
    def turns(self) -> tuple[tuple[str, str], ...]:
        """Every ``(user, assistant)`` turn, the last being ``(prompt, answer)``."""
        return (*self.history, (self.prompt, self.answer))


@dataclass(frozen=True)
class Task:
    """One step of a continual stream: training data, held-out evaluation data, scorer.

    Attributes:
        name: Task name, unique in the stream (a column of the accuracy matrix).
        train: Training samples (empty for evaluation-only tasks).
        eval: Held-out evaluation samples.
        scorer: Name of the scorer in :data:`mcit.evaluation.scorers.SCORERS`.
        max_new_tokens: Generation budget for answers of this task.
        language_kind: ``"nlu"`` or ``"nlg"`` for a text-only language skill whose
            forgetting is reported by kind (see :mod:`mcit.data.synthetic.tasks`); ``None``
            otherwise.
        paper_scorer: A scorer that reproduces the evaluation script of the paper that
            published the task, computed on the same answers and reported beside ``scorer``'s
            (``results["paper"]``); ``None`` for none.
    """

    name: str
    train: Sequence[Sample]
    eval: Sequence[Sample]
    scorer: str = "exact_norm"
    max_new_tokens: int = 8
    language_kind: str | None = None
    paper_scorer: str | None = None


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


class Subset(Sequence[Sample]):
    """A view of some samples of a dataset (``indices``: a list or a ``range``), in that order, read lazily."""

    def __init__(self, dataset: Sequence[Sample], indices: Sequence[int]) -> None:
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.dataset[i] for i in self.indices[index]]
        return self.dataset[self.indices[index]]
