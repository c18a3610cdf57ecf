"""The official VQA evaluation's answer processing and accuracy, case by case.

Each expected value follows the rules of the VQA API's ``vqaEval.py`` (punctuation rule, the
period rule, number words, articles, contraction table) and its leave-one-out accuracy.
"""

from __future__ import annotations

import pytest

from mcit.evaluation.scorers import SCORERS
from mcit.evaluation.scorers.normalize import CONTRACTIONS, normalize_answer, process_punctuation

vqa = SCORERS.get("vqa")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Two dogs.", "2 dogs"),
        ("  The Cat\n", "cat"),
        ("a\tred  ball", "red ball"),
        ("none", "0"),
        ("None of them", "0 of them"),
        ("zero one ten eleven", "0 1 10 eleven"),
        ("an apple!", "apple"),
        ("...", ""),
        # the period: removed unless a digit follows it
        ("u.s.", "us"),
        ("1.5", "1.5"),
        ("It costs 2.", "it costs 2"),
        ("3.5.", "3.5"),
        # marks the official list does not hold are kept
        ("50%", "50%"),
        ("$5", "$5"),
        ("10:30", "10:30"),
        ("#1", "#1"),
        ("r&b", "r&b"),
        # a mark with no space beside it becomes a space; next to a space it is removed
        ("yes/no", "yes no"),
        ("yes / no", "yes no"),
        ("black-and-white", "black and white"),
        ("black - white", "black white"),
        ("hello,world", "hello world"),
        ("hello, world", "hello world"),
        # a comma between digits removes every mark, spaces or not
        ("1,000", "1000"),
        ("1,000-2,000", "10002000"),
        # contractions written without the apostrophe are restored; written ones are kept
        ("dont", "don't"),
        ("Don't", "don't"),
        ("isnt it", "isn't it"),
        ("couldnt've", "couldn't've"),
        ("couldn'tve", "couldn't've"),
        ("couldntve", "couldntve"),
        ("yall'd've", "y'all'd've"),
        ("twas", "'twas"),
        # the official table's keys for I'm / I've are capitalised: they never match
        ("im here", "im here"),
        ("ive", "ive"),
        ("somebody'd", "somebodyd"),
    ],
)
def test_normalize_answer_follows_the_official_rules(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_punctuation_rule_looks_at_the_whole_text() -> None:
    # The space next to "/" decides for every "/" in the answer, not only that one.
    assert process_punctuation("a/b / c") == "ab  c"
    assert process_punctuation("a/b/c") == "a b c"


def test_contraction_table_size_and_spot_checks() -> None:
    # The official table (GT-Vision-Lab/VQA vqaEval.py lines 21-42) has 120 keys; 4 are
    # capitalised (never match) and "she's" and "let's" map to themselves.
    assert len(CONTRACTIONS) == 114
    assert CONTRACTIONS["wont"] == "won't" and CONTRACTIONS["oclock"] == "o'clock"
    assert CONTRACTIONS["whys"] == "why's" and CONTRACTIONS["'ows'at"] == "'ow's'at"
    assert "shes" not in CONTRACTIONS and "its" not in CONTRACTIONS and "wed" not in CONTRACTIONS


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("yes", ["yes"] * 2 + ["no"] * 8, 0.6),  # (2 * 1/3 + 8 * 2/3) / 10
        ("yes", ["yes"] + ["no"] * 9, 0.3),  # (1 * 0 + 9 * 1/3) / 10
        ("yes", ["yes"] * 3 + ["no"] * 7, 0.9),  # (3 * 2/3 + 7 * 1) / 10
        ("yes", ["yes"] * 4 + ["no"] * 6, 1.0),
        ("yes", ["yes"] * 10, 1.0),
        ("maybe", ["yes"] * 10, 0.0),
        ("Two", ["2", "two"] + ["3"] * 8, 0.6),  # "two" and "2" normalise alike
        ("50", ["50%"] * 10, 0.0),  # % is kept
        ("US", ["u.s."] * 10, 1.0),
        ("The cat.", ["cat"] * 3 + ["dog"] * 7, 0.9),
    ],
)
def test_vqa_accuracy_is_the_leave_one_out_mean(prediction: str, answers: list[str], expected: float) -> None:
    assert vqa(prediction, answers) == pytest.approx(expected)


def test_vqa_with_fewer_than_ten_answers_is_normalised_exact_match() -> None:
    assert vqa("Yes.", ["yes"]) == 1.0
    assert vqa("two", ["2"]) == 1.0
    assert vqa("no", ["yes", "yeah"]) == 0.0
