"""Answer normalisation of the official VQA evaluation (the VQA API's ``vqaEval.py``).

Rules, in the official order: newlines and tabs become spaces and the ends are stripped; each
mark of :data:`PUNCTUATION` is removed everywhere if the text has it next to a space or has a
comma between digits, and otherwise becomes a space; a period not followed by a digit is
removed; then, word by word on the lower-cased text, number words ``none``/``zero``..``ten``
become digits, the articles a/an/the are dropped and contractions written without their
apostrophe are restored (``dont`` -> ``don't``). Not touched: ``%``, ``$``, ``#``, ``&``, ``:``,
``'`` and the period before a digit (``50%`` stays ``50%``; ``1.5`` stays ``1.5``).

Two details follow the official tables, not intuition: the contraction table's keys for
"I'm"/"I've"/"I'd've" are capitalised, so they never match the lower-cased words (``im``
stays ``im``); and its entry for ``somebody'd`` maps it to ``somebodyd``.
"""

from __future__ import annotations

import re

PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
COMMA_BETWEEN_DIGITS = re.compile(r"\d,\d")
# The official pattern is r"(?!<=\d)(\.)(?!\d)"; its first group is a look-ahead (not the
# intended look-behind) that always holds at a period, so it removes every period not
# followed by a digit: "u.s." -> "us", "2." -> "2", "1.5" kept.
_PERIOD = re.compile(r"\.(?!\d)")
_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = frozenset({"a", "an", "the"})

# Contractions the table restores. One apostrophe: the key is the word without it. Two or
# more: one key per apostrophe left out (so "couldn't've" has keys "couldnt've" and
# "couldn'tve", and "couldntve" is not restored), as the official table lists them.
_ONE_APOSTROPHE = """
ain't aren't can't could've couldn't didn't doesn't don't hadn't hasn't haven't he'd he's how'd
how'll how's isn't it'd it'll ma'am mightn't might've mustn't must've needn't not've o'clock
oughtn't shan't should've shouldn't somebody'll somebody's someone'd someone'll someone's
something'd something'll that's there'd there're there's they'd they'll they're they've 'twas
wasn't we've weren't what'll what're what's what've when's where'd where's where've who'd who'll
who's who've why'll why're why's won't would've wouldn't y'all you'd you'll you're you've
""".split()
_SEVERAL_APOSTROPHES = """
couldn't've hadn't've he'd've it'd've mightn't've she'd've shouldn't've somebody'd've
someone'd've something'd've there'd've they'd've we'd've who'd've wouldn't've y'all'll you'd've
y'all'd've 'ow's'at
""".split()


def _contraction_table() -> dict[str, str]:
    table = {word.replace("'", ""): word for word in _ONE_APOSTROPHE}
    for word in _SEVERAL_APOSTROPHES:
        positions = [i for i, char in enumerate(word) if char == "'"]
        for position in positions:
            table[word[:position] + word[position + 1 :]] = word
    table["somebody'd"] = "somebodyd"  # sic, as in the official table
    return table


CONTRACTIONS = _contraction_table()


def process_punctuation(text: str, comma_between_digits: re.Pattern[str] = COMMA_BETWEEN_DIGITS, most_periods: int = 0) -> str:
    """The official ``processPunctuation``: marks removed or spaced, stray periods removed.

    Args:
        comma_between_digits: What counts as a comma between digits (which removes every mark);
            m4c's TextVQA evaluator has a pattern of its own.
        most_periods: At most this many stray periods removed; 0 for all. The scripts pass
            ``re.UNICODE`` (32) where ``re.sub`` takes its count (:mod:`.paper.vqa_scripts`).
    """
    remove_all = comma_between_digits.search(text) is not None
    out = text
    for mark in PUNCTUATION:
        if remove_all or mark + " " in text or " " + mark in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD.sub("", out, count=most_periods)


def process_digit_article(text: str) -> str:
    """The official ``processDigitArticle``: lower-case, number words, articles, contractions."""
    words = [_NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    return " ".join(CONTRACTIONS.get(word, word) for word in words if word not in _ARTICLES)


def normalize_answer(text: str) -> str:
    """An answer normalised as the official VQA evaluation normalises answers.

    Example:
        >>> normalize_answer(" Two  Dogs.\\n")
        '2 dogs'
        >>> normalize_answer("u.s.")
        'us'
    """
    return process_digit_article(process_punctuation(text.replace("\n", " ").replace("\t", " ").strip()))
