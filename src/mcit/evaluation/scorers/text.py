"""Exact-match scorers: as written, after the VQA normalisation, by containment, by class name."""

from __future__ import annotations

import re
from collections.abc import Sequence

from mcit.evaluation.scorers.base import per_sample
from mcit.evaluation.scorers.normalize import normalize_answer


@per_sample("exact")
def exact_match(prediction: str, references: Sequence[str]) -> float:
    """Case-sensitive exact match against any reference (surrounding whitespace ignored)."""
    pred = prediction.strip()
    return float(any(pred == ref.strip() for ref in references))


@per_sample("exact_norm")
def exact_match_normalized(prediction: str, references: Sequence[str]) -> float:
    """Exact match against any reference after the official VQA answer normalisation."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(ref) for ref in references))


@per_sample("contains")
def contains(prediction: str, references: Sequence[str]) -> float:
    """1 if any normalised reference appears as whole words in the normalised prediction."""
    pred = normalize_answer(prediction)
    for ref in references:
        norm = normalize_answer(ref)
        # An empty reference would trivially "occur" everywhere; never count it.
        if norm and re.search(rf"(?<!\S){re.escape(norm)}(?!\S)", pred):
            return 1.0
    return 0.0


_EDGE_PUNCTUATION = " \t\n.,;:!?\"'`()[]{}"
_LEADING_ARTICLE = re.compile(r"^(?:a|an|the)\s+")


def class_name(text: str) -> str:
    """A class label as compared by :func:`class_match`: lower-case, single spaces, no
    surrounding punctuation, no leading article ("A Golden retriever." -> "golden retriever")."""
    name = " ".join(text.lower().split()).strip(_EDGE_PUNCTUATION)
    return _LEADING_ARTICLE.sub("", name)


@per_sample("class")
def class_match(prediction: str, references: Sequence[str]) -> float:
    """Top-1 classification (ImageNet-style): the predicted class name equals a reference.

    Each reference is one accepted name of the class (give synonyms as several references).
    Inner punctuation is kept: "great white shark" does not match "great-white shark".
    """
    pred = class_name(prediction)
    return float(bool(pred) and any(pred == class_name(ref) for ref in references))
