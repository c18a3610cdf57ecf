"""Multiple-choice accuracy (ScienceQA, IconQA, MMBench-style): the option letter an answer picks."""

from __future__ import annotations

import re
from collections.abc import Sequence

from mcit.evaluation.scorers.base import per_sample

# Ordered from most to least specific; the first pattern that fires wins.
_MC_PATTERNS = (
    # The whole answer is (or starts with) an option label: "B", "b.", "(B)", "B) text".
    re.compile(r"^\s*\(?([A-Za-z])\)?\s*(?:$|[.):])"),
    # An explicit statement: "the answer is (C)", "Answer: c", "option D".
    re.compile(r"\b(?:answer|option|choice)\s*(?:is|:)?\s*\(?([A-Za-z])\)?(?![A-Za-z])", re.I),
    # A parenthesised label anywhere: "I'd pick (D) because ...".
    re.compile(r"\(([A-Z])\)"),
)
# Last resort: a standalone capital letter. "A" and "I" followed by a lowercase word are
# far more likely an article/pronoun ("A dog", "I think") than an option, so skip them,
# unless that word is a verb in the third person singular, which neither the article nor
# the pronoun can precede: "A is a complete sentence." picks option A.
_LABEL_VERB = r"(?:is|has|seems|looks|fits|matches|describes|shows|contains|represents|answers)\b"
_MC_FALLBACK = re.compile(rf"(?<![A-Za-z'])([A-Z])(?![A-Za-z'])(?!(?<=[AI])\s+(?!{_LABEL_VERB})[a-z])")


def extract_choice(text: str) -> str | None:
    """Return the upper-case option letter a free-form answer selects, or ``None``.

    Args:
        text: A model answer such as ``"B"``, ``"(b)"``, ``"C) a cat"`` or
            ``"The answer is D."``.

    Returns:
        A single letter ``"A"``..``"Z"``, or ``None`` when no option label is found.
    """
    for pattern in (*_MC_PATTERNS, _MC_FALLBACK):
        match = pattern.search(text)
        if match:
            return match.group(1).upper()
    return None


@per_sample("mc")
def multiple_choice(prediction: str, references: Sequence[str]) -> float:
    """Multiple-choice accuracy: the option letter in the prediction equals references[0]."""
    if not references:
        return 0.0
    gold = extract_choice(references[0])
    pred = extract_choice(prediction)
    return float(gold is not None and pred == gold)
