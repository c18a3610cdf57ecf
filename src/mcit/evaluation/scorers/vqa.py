"""VQA accuracy as the official VQA evaluation computes it (VQAv2, VizWiz, TextVQA, OK-VQA)."""

from __future__ import annotations

from collections.abc import Sequence

from mcit.evaluation.scorers.base import per_sample
from mcit.evaluation.scorers.normalize import normalize_answer

# VQAv2, VizWiz and TextVQA give ten human answers per question.
HUMAN_ANSWERS = 10


@per_sample("vqa")
def vqa_accuracy(prediction: str, references: Sequence[str]) -> float:
    """VQA accuracy: mean over the leave-one-out subsets of min(#matching answers / 3, 1).

    The prediction and every human answer are normalised (:func:`normalize_answer`). With
    ten answers, each of the ten subsets of nine scores min(#matches / 3, 1) and the score is
    their mean, so "yes" against two "yes" and eight "no" scores (2 * 1/3 + 8 * 2/3) / 10 =
    0.6 and three matches score 0.9. With fewer than ten answers (one reference, as GQA's)
    there is no annotator consensus to count: exact match after the same normalisation.
    """
    pred = normalize_answer(prediction)
    answers = [normalize_answer(ref) for ref in references]
    if len(answers) < HUMAN_ANSWERS:
        return float(pred in answers)
    matches = sum(answer == pred for answer in answers)
    # Leaving out annotator i removes one match exactly when annotator i matched.
    subsets = [min((matches - (answer == pred)) / 3.0, 1.0) for answer in answers]
    return sum(subsets) / len(subsets)
