"""The image check's parts: the derangement, the blank and shuffled views, the verdicts, the report's rows."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from PIL import Image

from mcit.data.images import MID_GREY, ImageRef, blank_colour
from mcit.data.sample import Sample
from mcit.image_reliance import (
    VERDICTS,
    TaskImageCheck,
    blank_images,
    derangement,
    shuffled_images,
    verdict,
)
from mcit.report.image_check import image_check_notes, image_check_rows, read_image_check


def sample(name: str, *images) -> Sample:
    return Sample(name, "<image>\n" * len(images) + "What is it?", "x", tuple(images))


def picture(rgb: tuple[int, int, int], size=(6, 4)) -> Image.Image:
    return Image.new("RGB", size, rgb)


def keys(samples, source):
    """Each sample's own images and the images it is shown, as comparable keys."""
    def key(s):
        return tuple(i.path if isinstance(i, ImageRef) else i.tobytes() for i in s.images)
    return [(key(samples[i]), key(samples[j])) for i, j in enumerate(source)]


def test_no_sample_keeps_its_own_image_even_where_questions_share_images():
    files = ["a", "a", "a", "b", "c", "c", "d", "e"]  # VQA: several questions per image
    samples = [sample(f"q{i}", ImageRef(f"/img/{f}.png")) for i, f in enumerate(files)]
    source = derangement(samples, seed=0)
    assert sorted(source) == list(range(len(samples))), "every image is shown exactly once"
    assert all(own != shown for own, shown in keys(samples, source))
    assert derangement(samples, seed=0) == source, "a fixed seed gives the same shuffle"
    assert any(derangement(samples, seed=s) != source for s in range(1, 6)), "the seed matters"


def test_decoded_images_are_compared_by_pixels_and_groups_by_image_count():
    red, blue, green = picture((255, 0, 0)), picture((0, 0, 255)), picture((0, 255, 0))
    samples = [
        sample("r1", red), sample("r2", picture((255, 0, 0))), sample("b", blue), sample("g", green),  # r1, r2: same pixels
        sample("pair1", red, blue), sample("pair2", green, blue),
        Sample("text", "Add 2 and 3.", "5"),
    ]
    source = derangement(samples, seed=3)
    assert source[6] == 6, "a text-only sample is left alone"
    assert {source[4], source[5]} == {4, 5} and source[4] == 5, "two-image samples swap among themselves"
    assert all(source[i] in (0, 1, 2, 3) for i in range(4))
    assert all(own != shown for own, shown in keys(samples, source)[:6])


def test_where_no_other_image_exists_the_sample_keeps_its_own():
    assert derangement([sample("only", ImageRef("/a.png"))]) == [0]
    same = [sample(f"q{i}", ImageRef("/a.png")) for i in range(3)]
    assert all(own == shown for own, shown in keys(same, derangement(same)))
    # one image shown by 3 of 4 samples: only one of its samples can be given the other image
    mostly = [sample(f"q{i}", ImageRef("/a.png")) for i in range(3)] + [sample("q3", ImageRef("/b.png"))]
    assert sum(own == shown for own, shown in keys(mostly, derangement(mostly))) == 2


def test_blank_images_replace_every_pixel_at_the_same_size():
    originals = [sample("a", picture((200, 0, 0), (7, 5))), sample("b", picture((0, 180, 40), (3, 9)), picture((9, 9, 9))), Sample("t", "Hi", "x")]
    blank = blank_images(originals, (123, 117, 104))
    assert len(blank) == 3 and blank[2] is originals[2]
    for own, replaced in zip(originals[:2], blank[:2]):  # (a slice, as generation reads batches)
        assert [i.size for i in replaced.images] == [i.size for i in own.images]
        assert all(i.getcolors() == [(i.width * i.height, (123, 117, 104))] for i in replaced.images)
        assert replaced.prompt == own.prompt and replaced.references == own.references
    assert originals[0].images[0].getpixel((0, 0)) == (200, 0, 0), "the evaluation set itself is untouched"


def test_shuffled_view_shows_the_source_samples_images():
    samples = [sample(str(i), ImageRef(f"/{i}.png")) for i in range(4)]
    view = shuffled_images(samples, [2, 3, 1, 0])
    assert [s.images[0].path for s in view] == ["/2.png", "/3.png", "/1.png", "/0.png"]
    assert [s.id for s in view] == ["0", "1", "2", "3"], "each sample keeps its question and references"


def test_blank_colour_is_the_processors_mean_or_mid_grey():
    clip = SimpleNamespace(processor=SimpleNamespace(image_processor=SimpleNamespace(image_mean=[0.48145466, 0.4578275, 0.40821073])))
    assert blank_colour(clip.processor) == ((123, 117, 104), "the processor's image_mean")
    assert blank_colour(SimpleNamespace())[0] == MID_GREY


@pytest.mark.parametrize(
    ("real", "blank", "shuffled", "expected"),
    [
        (0.9, 0.2, 0.1, "needs image"),
        (0.9, 0.88, 0.87, "no image needed"),
        (0.9, 0.1, 0.88, "own image not needed"),  # a constant answer: any image of the set does
        (0.6, 0.58, 0.2, "text suffices"),  # VQA's language prior: a wrong image misleads, none does not
        (0.9, 0.88, None, "no image needed"),  # one image in the set: the blank decides alone
        (0.9, 0.3, None, "needs image"),
        (0.03, 0.0, 0.0, "too low to tell"),  # no drop could reach the threshold
        (0.9, 0.95, 0.2, "text suffices"),  # a blank image helps: a negative drop is below any threshold
    ],
)
def test_verdicts(real, blank, shuffled, expected):
    assert verdict(real, blank, shuffled, 0.05) == expected


def test_threshold_is_the_drop_that_clears_a_task():
    assert verdict(0.9, 0.84, 0.3, 0.05) == "needs image"
    assert verdict(0.9, 0.84, 0.3, 0.10) == "text suffices"


def test_every_flagged_verdict_says_the_set_measures_little():
    for name, (flagged, _) in VERDICTS.items():
        check = TaskImageCheck("t", 10, 10, 0.9, 0.9, 0.9, 0, name)
        assert ("measures little of vision-language learning" in check.explanation()) == flagged


def test_record_rows_and_notes_round_trip_through_the_run_directory(tmp_path):
    checks = [
        TaskImageCheck("vqa", 100, 100, 0.6, 0.58, 0.2, 0, "text suffices"),
        TaskImageCheck("color", 50, 50, 0.8, 0.2, 0.1, 0, "needs image"),
        TaskImageCheck("nlu", 20, 0, None, None, None, 0, "text-only"),
        TaskImageCheck("count", 20, 20, 0.0, 0.0, 0.0, 0, "too low to tell"),
    ]
    (tmp_path / "image_check.json").write_text(json.dumps({"model": "m", "threshold": 0.05, "tasks": [c.record() for c in checks]}))
    check = read_image_check(tmp_path)
    rows = {row["task"]: row for row in image_check_rows(check)}
    assert rows["vqa"]["drop"] == pytest.approx(2.0) and rows["vqa"]["flag"] == "text suffices"
    assert rows["color"]["drop"] == pytest.approx(60.0) and rows["color"]["flag"] == ""
    assert rows["nlu"] == {"task": "nlu", "real": None, "blank": None, "shuffled": None, "drop": None, "flag": "(text-only)"}
    notes = image_check_notes(check)
    assert [flagged for flagged, _ in notes] == [True, False]
    assert notes[0][1].startswith("task 'vqa' scores 58.0 with blank images against 60.0 with its own")


def test_an_unreadable_check_file_is_an_error_entry_not_a_crash(tmp_path):
    assert read_image_check(tmp_path) is None
    (tmp_path / "image_check.json").write_text("{not json")
    assert "cannot be read" in read_image_check(tmp_path)["error"]
    (tmp_path / "image_check.json").write_text('{"tasks": 3}')
    assert "is not the result of `mcit data check --model`" in read_image_check(tmp_path)["error"]
