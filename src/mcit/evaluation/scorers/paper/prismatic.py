"""Prismatic's vlm-evaluation scorers (github.com/TRI-ML/vlm-evaluation, commit d9f5896), which
Srivastava et al.'s continual LLaVA runs use for GQA and RefCOCO (``vlm_eval/tasks/harnesses/``).

Its VQAv2 scorer is ``prismatic_vqav2`` and its TextVQA scorer the m4c evaluator
(``textvqa_m4c``), both in :mod:`.vqa_scripts`.
"""

from __future__ import annotations

import ast
import string
from collections.abc import Sequence

from mcit.evaluation.scorers.base import per_sample

_NO_PUNCTUATION = str.maketrans("", "", string.punctuation)


@per_sample("prismatic_gqa")
def prismatic_gqa(prediction: str, references: Sequence[str]) -> float:
    """GQA accuracy: the reply without ASCII punctuation, lower-cased, equals the answer as written.

    gqa.py (line 281) prepares the prediction; the official GQA script (vlm_eval/util/
    evaluation/gqa/eval.py, line 408) compares it with the question's answer.
    """
    return float(bool(references) and prediction.translate(_NO_PUNCTUATION).lower() == references[0])


def prismatic_box(text: str) -> list | None:
    """refcoco.py's parse_bbox (lines 292-302): a Python list literal of four numbers in [0, 1], x1 < x2 and y1 < y2.

    A tuple, a box in pixels or one with its corners swapped is invalid (None).
    """
    try:
        box = ast.literal_eval(text)
        valid = isinstance(box, list) and len(box) == 4 and all(0 <= value <= 1 for value in box)
        return box if valid and box[0] < box[2] and box[1] < box[3] else None
    # literal_eval raises these for text that is not a literal (or nests too deeply); the
    # comparisons raise TypeError for non-numbers.
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _iou(box: Sequence[float], target: Sequence[float]) -> float:
    """refcoco.py's compute_iou (lines 305-321); a degenerate union (never for a valid box) scores 0."""
    width = max(0, min(box[2], target[2]) - max(box[0], target[0]))
    height = max(0, min(box[3], target[3]) - max(box[1], target[1]))
    inter = width * height
    union = (box[2] - box[0]) * (box[3] - box[1]) + (target[2] - target[0]) * (target[3] - target[1]) - inter
    return inter / union if union > 0 else 0.0


@per_sample("prismatic_refcoco")
def prismatic_refcoco(prediction: str, references: Sequence[str]) -> float:
    """RefCOCO accuracy (refcoco.py lines 349-362): IoU >= 0.5 of a valid predicted box; an invalid one is wrong.

    Validity is :func:`prismatic_box`'s.
    """
    box = prismatic_box(prediction)
    target = prismatic_box(references[0]) if references else None
    return float(box is not None and target is not None and _iou(box, target) >= 0.5)
