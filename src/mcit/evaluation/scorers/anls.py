"""ANLS, the average normalised Levenshtein similarity of OCR and document VQA (ST-VQA, DocVQA)."""

from __future__ import annotations

from collections.abc import Sequence

from rapidfuzz.distance import Levenshtein

from mcit.evaluation.scorers.base import per_sample

# ST-VQA's tau: an answer further than this from every reference is counted as wrong.
THRESHOLD = 0.5


def _anls_text(text: str) -> str:
    """Lower-case with single spaces, as the ST-VQA / DocVQA evaluations compare answers."""
    return " ".join(text.lower().split())


@per_sample("anls")
def anls(prediction: str, references: Sequence[str]) -> float:
    """1 - NL to the closest reference, or 0 where NL >= 0.5 (ST-VQA's definition, tau = 0.5).

    NL is the Levenshtein distance divided by the longer string's length (rapidfuzz's
    normalised distance), on lower-cased text with single spaces. lmms-eval keeps 0.5 at
    exactly NL = 0.5 where the paper's rule (NL < tau) gives 0; the two differ only there.
    """
    pred = _anls_text(prediction)
    best = 0.0
    for ref in references:
        distance = Levenshtein.normalized_distance(pred, _anls_text(ref))
        if distance < THRESHOLD:
            best = max(best, 1.0 - distance)
    return best
