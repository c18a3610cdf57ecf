"""Relaxed accuracy of chart QA (ChartQA, PlotQA): numbers within 5%, other answers exact."""

from __future__ import annotations

from collections.abc import Sequence

from mcit.evaluation.scorers.base import per_sample

TOLERANCE = 0.05


def _number(text: str) -> float | None:
    """``text`` as a number (``"12.5"``, ``"40%"`` -> 0.4), or None when it is not one."""
    text = text.strip()
    try:
        return float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        return None


def _relaxed_match(prediction: str, reference: str) -> bool:
    pred, ref = _number(prediction), _number(reference)
    # As ChartQA's evaluation (pix2struct's relaxed_correctness): a reference of 0 has no
    # relative tolerance and is compared as text, like any non-numeric answer.
    if pred is not None and ref:
        return abs(pred - ref) / abs(ref) <= TOLERANCE
    return prediction.strip().lower() == reference.strip().lower()


@per_sample("relaxed")
def relaxed_accuracy(prediction: str, references: Sequence[str]) -> float:
    """1 if the prediction is within 5% of a numeric reference, or equals a text one (case-insensitive)."""
    return float(any(_relaxed_match(prediction, ref) for ref in references))
