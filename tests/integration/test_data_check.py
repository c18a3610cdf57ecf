"""`mcit data check`: counts, one-line failures (missing, corrupt, duplicate), and the manifest."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from conftest import one_line_error
from mcit.benchmarks.data_check import check_data
from mcit.cli import app
from mcit.config import load_config
from mcit.data.synthetic.files import write_example_stream


@pytest.fixture
def stream(tmp_path):
    return write_example_stream(tmp_path / "data", train_per_task=8, eval_per_task=4)


def check(*args: str):
    return CliRunner().invoke(app, ["data", "check", *args])


def test_counts_records_images_and_text_only(stream):
    report = check_data(load_config(stream).benchmark)
    counts = {(f.task, f.role): (f.records, f.image_records, f.text_only, f.images, f.eval_ids_in_train) for f in report.files}
    assert counts == {
        ("color", "train"): (8, 8, 0, 8, None), ("color", "eval"): (4, 4, 0, 4, 0),
        ("shape", "train"): (8, 8, 0, 8, None), ("shape", "eval"): (4, 4, 0, 4, 0),
        ("arithmetic", "eval"): (4, 0, 4, 0, None),
    }  # fmt: skip
    result = check(str(stream))
    assert result.exit_code == 0, result.output
    assert "ok: 28 records and 24 images read and decoded" in result.output


def test_eval_ids_that_are_train_ids_are_reported(stream):
    path = stream.parent / "color" / "val.json"
    records = json.loads(path.read_text())
    train = json.loads((stream.parent / "color" / "train.json").read_text())
    records[0]["question_id"] = train[3]["id"]
    path.write_text(json.dumps(records))
    result = check(str(stream))
    assert result.exit_code == 0
    assert "task 'color': 1 of 4 eval ids are also train ids" in " ".join(result.output.split())


def test_missing_image_is_one_line_naming_the_first_and_the_count(stream):
    images = sorted((stream.parent / "images" / "shape" / "train").glob("*.png"))
    for image in images[:3]:
        image.unlink()
    line = one_line_error(check(str(stream)))
    assert f"no such file {images[0]}" in line and "and 2 more records with a missing image file" in line


def test_corrupt_image_is_found_by_decoding(stream):
    image = sorted((stream.parent / "images" / "color" / "val").glob("*.png"))[1]
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])  # a truncated PNG: its header still reads
    line = one_line_error(check(str(stream)))
    assert "val.json" in line and "field 'image'" in line and f"cannot read {image}" in line


def test_duplicate_id_is_refused(stream):
    path = stream.parent / "shape" / "train.json"
    records = json.loads(path.read_text())
    records[5]["id"] = records[2]["id"]
    path.write_text(json.dumps(records))
    line = one_line_error(check(str(stream)))
    assert "record 5" in line and "duplicate of record 2" in line


def test_manifest_is_written_once_then_verified(stream, tmp_path):
    manifest = tmp_path / "manifest.json"
    first = check(str(stream), "--manifest", str(manifest))
    assert first.exit_code == 0 and f"wrote manifest {manifest} (" in first.output.replace("\n", "")
    files = json.loads(manifest.read_text())["files"]
    assert "color/train.json" in files and len(files) == 5 + 24
    again = check(str(stream), "--manifest", str(manifest))
    assert again.exit_code == 0 and "matches manifest" in again.output.replace("\n", "")
    image = sorted((stream.parent / "images" / "color" / "train").glob("*.png"))[0]
    image.write_bytes(write_png_of_other_colour(image))
    line = one_line_error(check(str(stream), "--manifest", str(manifest)))
    assert "1 of 29 files differ from it (1 changed)" in line and "images/color/train/" in line


def write_png_of_other_colour(image) -> bytes:
    import io

    from PIL import Image

    with Image.open(image) as opened:
        other = Image.new("RGB", opened.size, (1, 2, 3))
    buffer = io.BytesIO()
    other.save(buffer, format="PNG")
    return buffer.getvalue()


def test_generated_benchmarks_have_no_files_to_check():
    line = one_line_error(check())
    assert "benchmark 'embedded' is generated" in line


def test_the_table_names_every_file_whole_in_a_log(stream):
    # CliRunner's output is not a terminal, like a log file: an 80-column console would cut these paths.
    result = check(str(stream))
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    for task, role, name in (("color", "train", "train.json"), ("color", "eval", "val.json"), ("shape", "train", "train.json")):
        row = next(line for line in result.output.splitlines() if f"│ {task} " in line and f"│ {role} " in line)
        assert str(stream.parent / task / name) in row or f"{task}/{name}" in row, row
