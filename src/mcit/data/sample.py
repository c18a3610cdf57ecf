"""The unit of data: one instruction, its answer, and an optional image."""

from __future__ import annotations

from collections.abc import Sequence
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


def samples_to_state(samples: Sequence[Sample]) -> dict:
    """Samples as a state tree (JSON fields + uint8 image tensors) for checkpoints.

    Replay buffers are stored this way so a resumed run needs nothing but its run directory.
    """
    import numpy as np
    import torch

    return {
        "ids": [s.id for s in samples],
        "prompts": [s.prompt for s in samples],
        "answers": [s.answer for s in samples],
        "references": [list(s.references) for s in samples],
        "skills": [s.skill for s in samples],
        "images": [
            torch.empty(0, dtype=torch.uint8) if s.image is None else torch.from_numpy(np.array(s.image.convert("RGB")))
            for s in samples
        ],
    }


def samples_from_state(state: dict) -> list[Sample]:
    """Inverse of :func:`samples_to_state`."""
    images = [None if t.numel() == 0 else Image.fromarray(t.numpy(), "RGB") for t in state["images"]]
    return [
        Sample(i, p, a, img, tuple(r), k)
        for i, p, a, img, r, k in zip(
            state["ids"], state["prompts"], state["answers"], images, state["references"], state["skills"]
        )
    ]
