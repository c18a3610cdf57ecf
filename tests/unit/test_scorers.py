"""Unit tests for mcit.evaluation.scorers with hand-checked answers."""

from __future__ import annotations

import pytest

from mcit.errors import UserError
from mcit.evaluation.scorers import (
    SCORERS,
    extract_choice,
    normalize_answer,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Two dogs.", "2 dogs"),
        ("  The Cat\n", "cat"),
        ("a\tred  ball", "red ball"),
        ("1,000", "1000"),
        ("1.5", "1.5"),
        ("It costs 2.", "it costs 2"),
        ("yes/no", "yes no"),
        ("dont", "don't"),
        ("Don't", "don't"),
        ("zero one ten eleven", "0 1 10 eleven"),
        ("an apple!", "apple"),
        ("...", ""),
    ],
)
def test_normalize_answer(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_registered_names() -> None:
    assert SCORERS.names() == ["contains", "exact", "exact_norm", "mc", "vqa"]


def test_exact_is_case_sensitive_but_strips() -> None:
    exact = SCORERS.get("exact")
    assert exact("  cat ", ["dog", "cat"]) == 1.0
    assert exact("Cat", ["cat"]) == 0.0
    assert exact("cat", []) == 0.0


def test_exact_norm() -> None:
    exact_norm = SCORERS.get("exact_norm")
    assert exact_norm("Two dogs.", ["two dogs"]) == 1.0
    assert exact_norm("The 2 dogs", ["two dogs"]) == 1.0
    assert exact_norm("three dogs", ["two dogs"]) == 0.0
    assert exact_norm("B", ["b"]) == 1.0


def test_vqa_ten_references_partial_credit() -> None:
    vqa = SCORERS.get("vqa")
    refs = ["2", "two"] + ["3"] * 8
    assert vqa("Two", refs) == pytest.approx(2 / 3)
    assert vqa("3", refs) == 1.0  # 8 matches are capped at 1
    assert vqa("4", refs) == 0.0


def test_vqa_one_match_is_one_third() -> None:
    refs = ["yes"] + ["no"] * 9
    assert SCORERS.get("vqa")("Yes.", refs) == pytest.approx(1 / 3)
    assert SCORERS.get("vqa")("yes", ["yes"] * 10) == 1.0


def test_vqa_few_references_falls_back_to_exact_norm() -> None:
    vqa = SCORERS.get("vqa")
    assert vqa("Yes", ["yes"]) == 1.0
    assert vqa("no", ["yes", "yeah"]) == 0.0


@pytest.mark.parametrize(
    ("answer", "letter"),
    [
        ("B", "B"),
        ("b", "B"),
        ("B.", "B"),
        ("(B)", "B"),
        ("B) a red car", "B"),
        ("C: blue", "C"),
        ("the answer is (C)", "C"),
        ("The answer is d.", "D"),
        ("Answer: A", "A"),
        ("I think (D) fits best", "D"),
        ("I think it is B", "B"),
        ("A dog is shown, so E", "E"),
        ("no idea", None),
        ("", None),
    ],
)
def test_extract_choice(answer: str, letter: str | None) -> None:
    assert extract_choice(answer) == letter


def test_mc_scorer() -> None:
    mc = SCORERS.get("mc")
    assert mc("the answer is (C)", ["C"]) == 1.0
    assert mc("(c) a cat", ["C"]) == 1.0
    assert mc("B", ["(b)"]) == 1.0
    assert mc("the answer is (C)", ["B"]) == 0.0
    assert mc("unsure", ["A"]) == 0.0
    assert mc("A", []) == 0.0


def test_contains_whole_words_only() -> None:
    contains = SCORERS.get("contains")
    assert contains("I see two dogs on the grass.", ["Dogs"]) == 1.0
    assert contains("There are 2 cats", ["two"]) == 1.0
    assert contains("a hotdog stand", ["dog"]) == 0.0
    assert contains("anything", ["the"]) == 0.0  # reference normalises to ""
    assert contains("a red car", ["blue", "red car"]) == 1.0


def test_scores_are_in_unit_interval() -> None:
    refs = ["x"] * 10
    for name in SCORERS.names():
        value = SCORERS.get(name)("x", refs)
        assert 0.0 <= value <= 1.0, name


def test_unknown_scorer_suggests_close_name() -> None:
    with pytest.raises(UserError, match="Did you mean 'exact_norm'"):
        SCORERS.get("exact_nrom")
    with pytest.raises(UserError, match="vqa"):
        SCORERS.get("vqa_acc")
