"""ANLS, relaxed accuracy and class-name match, on the cases their reference evaluations define."""

from __future__ import annotations

import pytest

from mcit.evaluation.scorers import SCORERS
from mcit.evaluation.scorers.text import class_name

anls = SCORERS.get("anls")
relaxed = SCORERS.get("relaxed")
class_match = SCORERS.get("class")


@pytest.mark.parametrize(
    ("prediction", "references", "expected"),
    [
        ("Stop", ["stop"], 1.0),  # case and spacing do not count
        ("  coca   cola ", ["Coca Cola"], 1.0),
        ("stap", ["stop"], 0.75),  # one substitution in four characters
        ("st", ["stop"], 0.0),  # NL = 2/4 is not below tau = 0.5
        ("sto", ["stop"], 0.75),
        ("abcdefghij", ["abcdefgxyz"], 0.7),
        ("abcdefghij", ["abcdexyzuv"], 0.0),  # NL = 0.5
        ("abcdefghij", ["abcdwxyzuv"], 0.0),  # NL = 0.6
        ("stap", ["go", "stop"], 0.75),  # the closest reference counts
        ("", ["stop"], 0.0),
    ],
)
def test_anls(prediction, references, expected):
    assert anls(prediction, references) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("100", "100", 1.0),
        ("104", "100", 1.0),  # 4% off
        ("105", "100", 1.0),  # exactly 5%
        ("105.1", "100", 0.0),
        ("-0.97", "-1", 1.0),
        ("40%", "0.41", 1.0),  # "40%" is 0.40
        ("0.5", "0", 0.0),  # a zero reference has no relative tolerance: compared as text
        ("0", "0", 1.0),
        ("Yes", "yes", 1.0),
        ("1,000", "1000", 0.0),  # not a number as written: compared as text
        ("blue", "red", 0.0),
    ],
)
def test_relaxed_accuracy(prediction, reference, expected):
    assert relaxed(prediction, [reference]) == expected


def test_relaxed_takes_any_reference():
    assert relaxed("52", ["10", "50"]) == 1.0


@pytest.mark.parametrize(
    ("prediction", "references", "expected"),
    [
        ("Golden retriever.", ["golden retriever"], 1.0),
        ("A tench", ["tench", "Tinca tinca"], 1.0),
        ("tinca tinca", ["tench", "Tinca tinca"], 1.0),
        ("golden", ["golden retriever"], 0.0),  # the whole class name, not a part
        ("it is a golden retriever", ["golden retriever"], 0.0),
        ("great-white shark", ["great white shark"], 0.0),
        ("", ["tench"], 0.0),
    ],
)
def test_class_match(prediction, references, expected):
    assert class_match(prediction, references) == expected


def test_class_name():
    assert class_name("  The  Golden Retriever!\n") == "golden retriever"
