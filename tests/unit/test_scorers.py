"""Unit tests for mcit.evaluation.scorers with hand-checked answers."""

from __future__ import annotations

import pytest

from mcit.errors import UserError
from mcit.evaluation.scorers import SCORERS, extract_choice
from mcit.evaluation.scorers.base import SampleScorer


def test_registered_names() -> None:
    assert SCORERS.names() == [
        "anls", "caption", "class", "coin_gqa", "coin_grounding", "coin_imagenet", "coin_ocrvqa", "coin_scienceqa", "contains",
        "exact", "exact_nocase", "exact_norm", "grounding", "grounding_1000", "llava_pope", "llava_scienceqa", "mc",
        "mcitlib_ai2d", "mcitlib_finvis", "mcitlib_ocr", "mcitlib_pvqa", "mcitlib_sat", "mcitlib_sci", "prismatic_gqa",
        "prismatic_refcoco", "prismatic_vqav2", "relaxed", "textvqa_m4c", "vqa", "vqa_official",
    ]  # fmt: skip


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
        # ScienceQA's "Which is a complete sentence?": an option letter before a verb
        ("A is a complete sentence.", "A"),
        ("I think A is right", "A"),
        ("A cat sleeps.", None),
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


@pytest.mark.parametrize("name", [n for n in SCORERS.names() if isinstance(SCORERS.get(n), SampleScorer)])
def test_per_sample_scorers_stay_in_unit_interval_and_average(name: str) -> None:
    scorer = SCORERS.get(name)
    predictions = ["x", "the answer is (B)", "0.12", "", "[0.1, 0.1, 0.5, 0.5]"]
    references = [["x"] * 10, ["B"], ["0.125"], ["y"], ["[0.1, 0.1, 0.5, 0.5]"]]
    each = [scorer(p, r) for p, r in zip(predictions, references)]
    assert all(0.0 <= v <= 1.0 for v in each)
    result = scorer.score(predictions, references)
    assert result.per_sample == each
    assert result.score == pytest.approx(sum(each) / len(each))


def test_a_task_without_samples_is_not_scored_as_zero() -> None:
    with pytest.raises(ValueError, match="at least one"):
        SCORERS.get("exact").score([], [])


def test_unknown_scorer_suggests_close_name() -> None:
    with pytest.raises(UserError, match="Did you mean 'exact_norm'"):
        SCORERS.get("exact_nrom")
    with pytest.raises(UserError, match="vqa"):
        SCORERS.get("vqa_acc")
