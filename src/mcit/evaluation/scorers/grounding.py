"""Grounding (RefCOCO-style referring expressions): a box parsed from the answer, IoU, acc@IoU>=0.5.

A box is the first four numbers of a text, read as x1, y1, x2, y2, which covers the formats
model families print: ``[0.12, 0.30, 0.55, 0.89]`` (LLaVA-1.5 and CoIN, normalised),
``(123,456),(789,901)`` (Qwen2-VL, on a 0-1000 grid), ``<box>[[123, 456, 789, 901]]</box>``
(InternVL, 0-1000) and ``{"bbox_2d": [34, 50, 210, 300]}`` (Qwen2.5-VL, pixels).

Frames: a box whose numbers are all at most 1 is normalised (fractions of the image's width
and height); any other box is in pixels and is divided by the sample's image size. With
``grounding_1000`` the prediction is on the 0-1000 grid of Qwen2-VL and InternVL instead.
References follow the first rule. A sample counts as right when IoU >= 0.5.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mcit.evaluation.scorers.base import SCORERS, ImageSize, Scorer, TaskScore, mean_score

Box = tuple[float, float, float, float]
IOU_THRESHOLD = 0.5
# A number standing alone: not the "2" of a key such as "bbox_2d".
_NUMBER = re.compile(r"(?<![A-Za-z_\d.])-?\d+(?:\.\d+)?(?![A-Za-z_\d])")


def parse_box(text: str) -> Box | None:
    """The first four numbers of ``text`` as (x1, y1, x2, y2), corners sorted; None if fewer."""
    numbers = [float(n) for n in _NUMBER.findall(text)[:4]]
    if len(numbers) < 4:
        return None
    x1, y1, x2, y2 = numbers
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes in the same frame (0 for empty boxes)."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _normalised(box: Box, size: ImageSize, where: str) -> Box:
    if max(box) <= 1.0:
        return box
    if size is None:
        raise ValueError(f"{where}: a box in pixels {list(box)} needs the sample's image, and it has none")
    width, height = size
    return box[0] / width, box[1] / height, box[2] / width, box[3] / height


class GroundingScorer(Scorer):
    """Accuracy at IoU >= 0.5 of the predicted box against the reference box; mean IoU in parts."""

    needs_image_sizes = True

    def __init__(self, prediction_grid: float | None = None) -> None:
        # None: the prediction's frame follows its values, like the reference's; a number:
        # the prediction is on a 0..grid scale.
        self.prediction_grid = prediction_grid

    def score(self, predictions: Sequence[str], references: Sequence[Sequence[str]], image_sizes=None) -> TaskScore:
        sizes = list(image_sizes) if image_sizes is not None else [None] * len(predictions)
        ious, unparsed = [], 0
        for index, (prediction, refs, size) in enumerate(zip(predictions, references, sizes, strict=True)):
            target = parse_box(refs[0]) if refs else None
            if target is None:
                raise ValueError(f"evaluation sample {index}: the reference {list(refs)[:1]} holds no box (four numbers)")
            target = _normalised(target, size, f"evaluation sample {index} reference")
            box = parse_box(prediction)
            if box is None:
                unparsed += 1
                ious.append(0.0)
                continue
            if self.prediction_grid is not None:
                box = tuple(v / self.prediction_grid for v in box)
            else:
                box = _normalised(box, size, f"evaluation sample {index} prediction")
            ious.append(iou(box, target))
        hits = [float(value >= IOU_THRESHOLD) for value in ious]
        notes = (f"{unparsed} of {len(predictions)} answers held no box (scored 0)",) if unparsed else ()
        return mean_score(hits, {"mean IoU": sum(ious) / len(ious)} if ious else {}, notes)


SCORERS.register("grounding", help="Grounding: accuracy at IoU >= 0.5 of the first box in the answer (normalised or pixel coordinates).")(GroundingScorer())
SCORERS.register("grounding_1000", help="Grounding with predictions on a 0-1000 grid (Qwen2-VL, InternVL); accuracy at IoU >= 0.5.")(GroundingScorer(1000.0))
