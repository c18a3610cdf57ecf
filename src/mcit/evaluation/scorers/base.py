"""What a scorer is: the registry, the score of a task, and the per-sample form most scorers take.

A scorer scores a task's answers all at once (:meth:`Scorer.score`), because some metrics are
corpus-level (CIDEr's document frequencies, BLEU's brevity penalty). Most are an average of
per-sample scores; :func:`per_sample` registers such a function, which stays callable on one
answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mcit.registry import Registry

SampleFn = Callable[[str, Sequence[str]], float]
# (width, height) of a sample's first image, or None for a text-only sample.
ImageSize = tuple[int, int] | None


@dataclass(frozen=True)
class TaskScore:
    """The score of one task's evaluation answers.

    Attributes:
        score: The task's number (a fraction; 1.0 = 100 points), the accuracy-matrix entry.
        per_sample: Each sample's own score, in the order of the answers (so a disputed number
            can be checked sample by sample). For a corpus-level metric it is the sample's
            sentence-level value, whose mean need not equal ``score``.
        parts: Named sub-metrics (BLEU-1..4, CIDEr, mean IoU ...), fractions as ``score``.
        notes: What ran and what did not (e.g. METEOR skipped without Java).
    """

    score: float
    per_sample: list[float]
    parts: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


class Scorer:
    """A registered scorer. Subclasses implement :meth:`score`.

    ``needs_image_sizes`` asks the evaluation to pass each sample's image size (grounding
    scorers convert pixel boxes with it); other scorers get ``None``. ``needs_samples`` asks
    for the evaluation samples themselves as the keyword ``samples`` (a paper's script that
    decides by the question or the image file name, e.g. MCITlib's science scorer).
    """

    needs_image_sizes = False
    needs_samples = False

    def score(
        self,
        predictions: Sequence[str],
        references: Sequence[Sequence[str]],
        image_sizes: Sequence[ImageSize] | None = None,
    ) -> TaskScore:
        raise NotImplementedError


class SampleScorer(Scorer):
    """A scorer that averages a per-sample function ``fn(prediction, references) -> [0, 1]``."""

    def __init__(self, fn: SampleFn) -> None:
        self.fn = fn
        self.__doc__ = fn.__doc__

    def __call__(self, prediction: str, references: Sequence[str]) -> float:
        return self.fn(prediction, references)

    def score(self, predictions, references, image_sizes=None) -> TaskScore:
        return mean_score([self.fn(p, r) for p, r in zip(predictions, references, strict=True)])


def mean_score(per_sample: list[float], parts: dict[str, float] | None = None, notes: tuple[str, ...] = ()) -> TaskScore:
    """A :class:`TaskScore` whose score is the mean of ``per_sample`` (which must not be empty)."""
    if not per_sample:
        raise ValueError("a task needs at least one evaluation sample to be scored")
    return TaskScore(sum(per_sample) / len(per_sample), per_sample, parts or {}, notes)


SCORERS: Registry[Scorer] = Registry("scorer")


def per_sample(name: str) -> Callable[[SampleFn], SampleFn]:
    """Register ``fn(prediction, references) -> float`` as the scorer ``name``; returns ``fn``."""

    def decorator(fn: SampleFn) -> SampleFn:
        SCORERS.register(name)(SampleScorer(fn))
        return fn

    return decorator
