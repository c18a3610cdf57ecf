"""Per-sample answer scorers and the answer normalisation they share.

Every scorer has the signature ``scorer(prediction, references) -> float`` with a
result in ``[0, 1]`` and is registered in :data:`SCORERS`, so benchmarks name their
scorer in config; evaluation averages it over a task's samples.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from mcit.registry import Registry

Scorer = Callable[[str, Sequence[str]], float]

SCORERS: Registry[Scorer] = Registry("scorer")

# Same word lists as the official VQA evaluation script, trimmed to the common cases.
_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = frozenset({"a", "an", "the"})
# Apostrophes are stripped before this lookup, so both "dont" and "don't" end up as
# the canonical "don't" (as the official script outputs).
_CONTRACTIONS = {
    "dont": "don't", "doesnt": "doesn't", "didnt": "didn't", "isnt": "isn't",
    "arent": "aren't", "wasnt": "wasn't", "werent": "weren't", "cant": "can't",
    "couldnt": "couldn't", "wont": "won't", "wouldnt": "wouldn't",
    "shouldnt": "shouldn't", "hasnt": "hasn't", "havent": "haven't",
    "im": "i'm", "ive": "i've", "youre": "you're", "theyre": "they're",
    "whats": "what's", "thats": "that's", "itll": "it'll",
}  # fmt: skip

# "1,000" -> "1000": a thousands separator must not split a number into two tokens.
_DIGIT_COMMA = re.compile(r"(?<=\d),(?=\d)")
# A period is kept only inside a decimal number ("1.5"); elsewhere it is punctuation.
_NON_DECIMAL_PERIOD = re.compile(r"(?<!\d)\.|\.(?!\d)")
# Remaining punctuation becomes a space so "yes/no" stays two words rather than "yesno".
_PUNCT = re.compile(r"[!\"#$%&()*+,\-/:;<=>?@\[\\\]^_`{|}~]")


def normalize_answer(text: str) -> str:
    """Normalise an answer the way the official VQA evaluation does.

    Lowercases, turns newlines/tabs into spaces, drops punctuation (keeping decimal
    points and joining digit groups such as ``1,000``), maps number words zero..ten
    to digits, removes articles, canonicalises a few contractions and collapses
    whitespace.

    Args:
        text: Raw model output or reference answer.

    Returns:
        The normalised answer; ``""`` if nothing but punctuation/articles remained.

    Example:
        >>> normalize_answer(" Two  Dogs.\\n")
        '2 dogs'
    """
    text = text.lower().replace("\n", " ").replace("\t", " ").strip()
    text = _DIGIT_COMMA.sub("", text)
    text = text.replace("'", "").replace("\u2019", "")
    text = _NON_DECIMAL_PERIOD.sub(" ", text)
    text = _PUNCT.sub(" ", text)
    words = []
    for word in text.split():
        if word in _ARTICLES:
            continue
        word = _NUMBER_WORDS.get(word, word)
        words.append(_CONTRACTIONS.get(word, word))
    return " ".join(words)


@SCORERS.register("exact")
def exact_match(prediction: str, references: Sequence[str]) -> float:
    """Case-sensitive exact match against any reference (surrounding whitespace ignored)."""
    pred = prediction.strip()
    return float(any(pred == ref.strip() for ref in references))


@SCORERS.register("exact_norm")
def exact_match_normalized(prediction: str, references: Sequence[str]) -> float:
    """Exact match against any reference after :func:`normalize_answer`."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(ref) for ref in references))


@SCORERS.register("vqa")
def vqa_accuracy(prediction: str, references: Sequence[str]) -> float:
    """VQA accuracy: min(#matching human answers / 3, 1) with >= 10 answers, else exact_norm."""
    # With fewer than 10 references there is no annotator consensus to count, so the
    # soft score would be meaningless; fall back to normalised exact match.
    if len(references) < 10:
        return exact_match_normalized(prediction, references)
    pred = normalize_answer(prediction)
    matches = sum(pred == normalize_answer(ref) for ref in references)
    return min(matches / 3.0, 1.0)


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
# far more likely an article/pronoun ("A dog", "I think") than an option, so skip them.
_MC_FALLBACK = re.compile(r"(?<![A-Za-z'])([A-Z])(?![A-Za-z'])(?!(?<=[AI])\s+[a-z])")


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


@SCORERS.register("mc")
def multiple_choice(prediction: str, references: Sequence[str]) -> float:
    """Multiple-choice accuracy: the option letter in the prediction equals references[0]."""
    if not references:
        return 0.0
    gold = extract_choice(references[0])
    pred = extract_choice(prediction)
    return float(gold is not None and pred == gold)


@SCORERS.register("contains")
def contains(prediction: str, references: Sequence[str]) -> float:
    """1 if any normalised reference appears as whole words in the normalised prediction."""
    pred = normalize_answer(prediction)
    for ref in references:
        norm = normalize_answer(ref)
        # An empty reference would trivially "occur" everywhere; never count it.
        if norm and re.search(rf"(?<!\S){re.escape(norm)}(?!\S)", pred):
            return 1.0
    return 0.0
