"""Is the image needed? Scores of a model on each evaluation set with its images, blank ones and other samples' ones.

A task measures vision-language learning only if its answers depend on the sample's own
image. The check scores a model (usually the base model a stream starts from) three ways with
the task's own scorer and generation budget:

* **real**: the samples as they are;
* **blank**: every image replaced by a plain image of the same size in the processor's mean
  colour (``image_processor.image_mean``, mid-grey where the processor has none), which
  normalises to zero: the vision encoder sees no signal, and the prompt keeps its length
  (processors that tile or resize by image size give it the same number of image tokens);
* **shuffled**: every sample shown another sample's image, a fixed-seed derangement among the
  samples with as many images: no sample keeps its own image (compared by file, stored row
  or pixels, so questions that share an image never get it back), and every image is still
  shown once, so the set's images keep their distribution.

Text-only samples are unchanged in every variant; a set without images is reported
text-only and not scored. Answers are always scored against the sample's own references
(and image sizes, for grounding scorers). A task is flagged when the real score exceeds
either variant's by less than the threshold (:data:`DEFAULT_THRESHOLD`, 5 points: on an
evaluation set of a few hundred samples the standard error of a score near 50% is about
2.5 points, so a smaller drop cannot be told from none).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from mcit.data.collate import Collator
from mcit.data.images import ImageRef, StoredImage, blank_colour, blank_like
from mcit.data.sample import Sample, Task
from mcit.errors import UserError
from mcit.eval_run import load_for_eval
from mcit.evaluation.evaluate import score_answers
from mcit.evaluation.generate import generate_answers
from mcit.report.image_check import IMAGE_CHECK_FILE

DEFAULT_THRESHOLD = 0.05  # a fraction (5 points); see the module docstring
Phase = Callable[[str, int], Callable[[int], None]]

# verdict -> (flagged, what it means); {real}, {blank}, {shuffled} are points, {variants} the blank and shuffled ones in words.
VERDICTS = {
    "no image needed": (True, "scores {real} with its images against {variants}: the model answers this set without looking, so it measures little of vision-language learning"),
    "own image not needed": (True, "scores {shuffled} with other samples' images against {real} with its own: its answers do not depend on the sample's image, so it measures little of vision-language learning"),
    "text suffices": (True, "scores {blank} with blank images against {real} with its own: the question alone gives the answers, so it measures little of vision-language learning"),
    "needs image": (False, "scores {real} with its images against {variants}: the answers depend on the image"),
    "too low to tell": (False, "scores {real} with its images, under the threshold: no drop could reach it, so the check cannot tell whether the set needs its images"),
    "text-only": (False, "has no images: nothing to replace"),
}  # fmt: skip


@dataclass(frozen=True)
class TaskImageCheck:
    """One evaluation set's scores (fractions) with real, blank and shuffled images, and its verdict.

    ``shuffled`` is ``None`` where no sample could be shown another image (one image-bearing
    sample, or one image shown by all); ``kept`` counts samples that kept their own image.
    """

    task: str
    samples: int
    image_samples: int
    real: float | None
    blank: float | None
    shuffled: float | None
    kept: int
    verdict: str

    @property
    def drop(self) -> float | None:
        """The smaller drop from the real score to a variant's: what the flag is decided on."""
        drops = [self.real - v for v in (self.blank, self.shuffled) if v is not None and self.real is not None]
        return min(drops) if drops else None

    @property
    def flagged(self) -> bool:
        return VERDICTS[self.verdict][0]

    def explanation(self) -> str:
        """One line: what the verdict means for this task."""
        shown = {k: "-" if v is None else f"{100 * v:.1f}" for k, v in (("real", self.real), ("blank", self.blank), ("shuffled", self.shuffled))}
        variants = f"{shown['blank']} with blank ones " + (
            f"and {shown['shuffled']} with other samples'" if self.shuffled is not None else "(the set has no other image to show it)"
        )
        line = f"task {self.task!r} " + VERDICTS[self.verdict][1].format(**shown, variants=variants)
        if self.kept and self.shuffled is not None:
            line += f" ({self.kept} of {self.image_samples} samples kept their own image in the shuffle: one image is shown by more than half of them)"
        return line

    def record(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "drop": self.drop, "flagged": self.flagged, "explanation": self.explanation()}


def verdict(real: float, blank: float, shuffled: float | None, threshold: float) -> str:
    """The verdict of a set with images from its three scores (fractions); see :data:`VERDICTS`."""
    if real < threshold:
        return "too low to tell"
    blind = real - blank < threshold
    swapped = shuffled is not None and real - shuffled < threshold
    if blind and (swapped or shuffled is None):
        return "no image needed"
    return "own image not needed" if swapped else "text suffices" if blind else "needs image"


def _image_key(image: Image.Image | ImageRef | StoredImage) -> Any:
    """What makes two images the same: the file, the stored row, or (decoded images) the pixels."""
    if isinstance(image, ImageRef):
        return ("file", image.path)
    if isinstance(image, StoredImage):
        return ("stored", image.source, image.row, image.column, image.position)
    return ("pixels", image.size, hashlib.sha1(image.tobytes()).hexdigest())


def derangement(samples: Sequence[Sample], seed: int = 0) -> list[int]:
    """For each sample, the sample whose images it is shown: another image wherever one exists.

    Samples are grouped by their number of images (a prompt's image markers must match);
    within a group, the samples are ordered by image (a random order of images, each image's
    samples together, the most shown image first) and each is given the images of the sample
    ``m`` places on (cyclically), ``m`` being how many samples the most shown image has. No
    sample gets an image equal to its own when ``m`` is at most half the group; otherwise the
    most shown image's surplus keeps it. Text-only samples map to themselves.
    """
    rng = random.Random(seed)
    source = list(range(len(samples)))
    groups: dict[int, dict[Any, list[int]]] = {}
    for index, sample in enumerate(samples):
        if sample.images:
            key = tuple(_image_key(image) for image in sample.images)
            groups.setdefault(len(sample.images), {}).setdefault(key, []).append(index)
    for by_image in groups.values():
        classes = list(by_image.values())
        rng.shuffle(classes)
        for members in classes:
            rng.shuffle(members)
        classes.sort(key=len, reverse=True)  # stable: equal sizes keep their random order
        order = [index for members in classes for index in members]
        shift = len(classes[0])
        for position, index in enumerate(order):
            source[index] = order[(position + shift) % len(order)]
    return source


class Replaced(Sequence[Sample]):
    """A lazy view of ``samples`` with each sample's images replaced by ``images(index, sample)``;
    nothing is decoded or drawn until a batch reads it."""

    def __init__(self, samples: Sequence[Sample], images: Callable[[int, Sample], tuple]) -> None:
        self.samples, self.images = samples, images

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        sample = self.samples[index]
        return dataclasses.replace(sample, images=self.images(index, sample)) if sample.images else sample


def blank_images(samples: Sequence[Sample], colour: tuple[int, int, int]) -> Replaced:
    return Replaced(samples, lambda _, sample: tuple(blank_like(image, colour) for image in sample.images))


def shuffled_images(samples: Sequence[Sample], source: list[int]) -> Replaced:
    return Replaced(samples, lambda index, _: samples[source[index]].images)


def check_images(
    model: torch.nn.Module,
    collator: Collator,
    tasks: list[Task],
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    threshold: float = DEFAULT_THRESHOLD,
    seed: int = 0,
    phase: Phase | None = None,
) -> list[TaskImageCheck]:
    """Score ``model`` on every task's evaluation set with real, blank and shuffled images.

    Args:
        threshold: A task is flagged when its real score exceeds the blank or the shuffled
            one by less than this (a fraction).
        seed: Seed of the shuffle.
        phase: Progress: one phase counting every generated answer.
    """
    if not 0 <= threshold <= 1:
        raise UserError(f"image check threshold {threshold!r}: give a fraction of the score between 0 and 1 (0.05 = 5 points)")
    colour, _ = blank_colour(collator.processor)
    image_samples = [sum(1 for sample in task.eval if sample.images) for task in tasks]
    work = 3 * sum(len(task.eval) for task, count in zip(tasks, image_samples) if count)
    advance = phase("image check (real, blank, shuffled)", work) if phase else None

    def score(task: Task, samples: Sequence[Sample]) -> float:
        predictions = generate_answers(model, collator, samples, task.max_new_tokens, batch_size, device, advance)
        return score_answers(task.scorer, task, predictions).score  # the sample's own references and image sizes

    checks = []
    for task, with_images in zip(tasks, image_samples):
        if not with_images:
            checks.append(TaskImageCheck(task.name, len(task.eval), 0, None, None, None, 0, "text-only"))
            continue
        source = derangement(task.eval, seed)
        kept = sum(1 for i, j in enumerate(source) if task.eval[i].images and _same_images(task.eval[i], task.eval[j]))
        real, blank = score(task, task.eval), score(task, blank_images(task.eval, colour))
        shuffled = score(task, shuffled_images(task.eval, source)) if kept < with_images else None
        if shuffled is None and advance:
            advance(len(task.eval))
        result = verdict(real, blank, shuffled, threshold)
        checks.append(TaskImageCheck(task.name, len(task.eval), with_images, real, blank, shuffled, kept, result))
    return checks


def _same_images(a: Sample, b: Sample) -> bool:
    return [_image_key(i) for i in a.images] == [_image_key(i) for i in b.images]


def check_model_images(config, model_path: str | None = None, threshold: float = DEFAULT_THRESHOLD, phase: Phase | None = None) -> dict[str, Any]:
    """The check of ``model_path`` (default: the config's model) on every evaluation column of ``config``.

    Returns:
        What ``image_check.json`` holds: ``{"model", "benchmark", "threshold", "seed", "blank",
        "tasks": [TaskImageCheck.record(), ...], "seconds"}`` (scores and threshold as fractions).
    """
    name, scenario, model, collator, device = load_for_eval(config, model_path)
    start = time.perf_counter()
    checks = check_images(model, collator, scenario.columns, config.eval.batch_size, device, threshold, config.seed, phase)
    colour, source = blank_colour(collator.processor)
    return {
        "model": name,
        "benchmark": config.benchmark.name,
        "threshold": threshold,
        "seed": config.seed,
        "blank": {"rgb": list(colour), "from": source},
        "tasks": [check.record() for check in checks],
        "seconds": time.perf_counter() - start,
    }


def image_check_path(out: Path) -> Path:
    """Where ``--out`` writes the check: ``out`` itself (a JSON file), or ``out/image_check.json`` for
    a directory (a run directory, where `mcit report` shows it).

    Raises:
        UserError: When the file's folder does not exist (checked before any scoring).
    """
    path = Path(out) / IMAGE_CHECK_FILE if Path(out).is_dir() else Path(out)
    if not path.parent.is_dir():
        raise UserError(f"--out {out}: no such directory {path.parent}")
    return path
