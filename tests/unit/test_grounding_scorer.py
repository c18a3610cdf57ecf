"""Boxes in the formats model families print, IoU, and accuracy at IoU >= 0.5."""

from __future__ import annotations

import pytest

from mcit.evaluation.scorers import SCORERS
from mcit.evaluation.scorers.grounding import iou, parse_box

grounding = SCORERS.get("grounding")


@pytest.mark.parametrize(
    ("text", "box"),
    [
        ("[0.12, 0.30, 0.55, 0.89]", (0.12, 0.30, 0.55, 0.89)),  # LLaVA-1.5 / CoIN
        ("(123,456),(789,901)", (123, 456, 789, 901)),  # Qwen2-VL (special tokens decoded away)
        ("<box>[[123, 456, 789, 901]]</box>", (123, 456, 789, 901)),  # InternVL
        ('{"bbox_2d": [34, 50, 210, 300], "label": "dog"}', (34, 50, 210, 300)),  # Qwen2.5-VL
        ("[0.5, 0.6, 0.1, 0.2]", (0.1, 0.2, 0.5, 0.6)),  # corners sorted
        ("the dog on the left", None),
        ("[0.1, 0.2, 0.3]", None),
    ],
)
def test_parse_box(text, box):
    assert parse_box(text) == (pytest.approx(box) if box else None)


def test_iou():
    assert iou((0, 0, 2, 2), (0, 0, 2, 2)) == 1.0
    assert iou((0, 0, 2, 2), (1, 0, 3, 2)) == pytest.approx(2 / 6)
    assert iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def test_accuracy_at_half_iou_with_mean_iou_in_parts():
    predictions = ["[0.0, 0.0, 0.5, 0.5]", "[0.0, 0.0, 0.5, 1.0]", "no box here"]
    references = [["[0.0, 0.0, 0.5, 0.5]"], ["[0.0, 0.0, 1.0, 1.0]"], ["[0.1, 0.1, 0.2, 0.2]"]]
    result = grounding.score(predictions, references)
    assert result.per_sample == [1.0, 1.0, 0.0]  # IoU 1.0, 0.5 (counts), unparsed
    assert result.score == pytest.approx(2 / 3)
    assert result.parts["mean IoU"] == pytest.approx(0.5)
    assert result.notes == ("1 of 3 answers held no box (scored 0)",)


def test_pixel_boxes_use_the_image_size():
    # Qwen2.5-VL prints pixels; the reference is normalised; the image is 200 x 100.
    result = grounding.score(['{"bbox_2d": [0, 0, 100, 50]}'], [["[0.0, 0.0, 0.5, 0.5]"]], [(200, 100)])
    assert result.per_sample == [1.0]
    # The same box read against a 100 x 100 image covers half the reference.
    assert grounding.score(["[0, 0, 100, 50]"], [["[0.0, 0.0, 1.0, 1.0]"]], [(100, 100)]).parts["mean IoU"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="needs the sample's image"):
        grounding.score(["[0, 0, 100, 50]"], [["[0.0, 0.0, 0.5, 0.5]"]], [None])


def test_thousand_grid_predictions():
    result = SCORERS.get("grounding_1000").score(["(0,0),(500,500)"], [["[0.0, 0.0, 0.5, 0.5]"]], [(640, 480)])
    assert result.per_sample == [1.0]
    # Read as pixels of a 640 x 480 image the same answer would miss.
    assert grounding.score(["(0,0),(500,500)"], [["[0.0, 0.0, 0.5, 0.5]"]], [(640, 480)]).per_sample == [0.0]


def test_reference_without_a_box_is_a_data_error():
    with pytest.raises(ValueError, match="sample 0: the reference"):
        grounding.score(["[0, 0, 1, 1]"], [["left dog"]])
