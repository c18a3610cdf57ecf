"""`mcit run` on the user's own files: a LLaVA-format stream and pool, and every way to get them wrong."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import example_stream, one_line_error
from mcit.benchmarks import build_stream
from mcit.cli import app
from mcit.config import load_config
from mcit.data.images import ImageRef

FAST = ["train.epochs=1", "train.batch_size=8", "eval.batch_size=16"]


@pytest.fixture(scope="module")
def stream_dir(tmp_path_factory) -> Path:
    """Two tasks + one eval-only task as files (16 train / 6 eval records each) and a tiny checkpoint."""
    return example_stream(tmp_path_factory.mktemp("stream"), train_per_task=16, eval_per_task=6)


@pytest.fixture
def stream(stream_dir, tmp_path) -> Path:
    """A private copy (tests may break its files)."""
    copy = tmp_path / "data"
    shutil.copytree(stream_dir, copy)
    return copy


def run(*args: str):
    return CliRunner().invoke(app, ["run", *args])


def edit(config: Path, change) -> Path:
    data = yaml.safe_load(config.read_text())
    change(data["benchmark"])
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config


def test_a_file_stream_trains_and_evaluates_every_task_after_every_task(stream, tmp_path):
    out = tmp_path / "run"
    result = run(str(stream / "stream.yaml"), f"model.name={stream / 'model'}", *FAST, "--out", str(out))
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert (results["tasks"], results["eval_only"]) == (["color", "shape"], ["arithmetic"])
    assert [row["after"] for row in results["rows"]] == ["color", "shape"]
    assert all(set(row["scores"]) == {"color", "shape", "arithmetic"} for row in results["rows"])
    assert results["rows"][0]["train_samples"] == 16
    saved = yaml.safe_load((out / "config.yaml").read_text())["benchmark"]
    assert saved["root"] == str(stream.resolve()) and saved["base"] is None and saved["train_per_task"] is None


def test_the_stream_holds_multi_turn_samples_and_image_paths(stream):
    data = build_stream(load_config(stream / "stream.yaml").benchmark, seed=0)
    color = data.tasks[0]
    assert len(color.train) == 16 and len(color.eval) == 6
    assert isinstance(color.train[0].images[0], ImageRef)
    assert color.train[3].history and color.train[3].history[0][1] == color.train[3].answer
    assert data.eval_only[0].eval[0].images == ()
    assert data.base_train is None and data.corpus


def test_root_is_the_config_folder_or_relative_to_it(stream, tmp_path):
    assert load_config(stream / "stream.yaml").benchmark.root == str(stream.resolve())
    moved = tmp_path / "configs" / "mine.yaml"
    moved.parent.mkdir()
    moved.write_text((stream / "stream.yaml").read_text())
    edit(moved, lambda b: b.update(root="../data"))
    config = load_config(moved)
    assert config.benchmark.root == str(stream.resolve())
    assert len(build_stream(config.benchmark, 0).tasks[1].train) == 16


def test_train_per_task_draws_a_seeded_subset_in_file_order(stream):
    config = load_config(stream / "stream.yaml", ["benchmark.train_per_task=5"])
    first = [s.id for s in build_stream(config.benchmark, 0).tasks[0].train]
    assert len(first) == 5 and first == sorted(first, key=lambda i: int(i.rsplit("-", 1)[1]))
    assert first == [s.id for s in build_stream(config.benchmark, 0).tasks[0].train]
    assert first != [s.id for s in build_stream(config.benchmark, 1).tasks[0].train]


@pytest.mark.parametrize("change, expected", [
    (lambda b: b["tasks"][0].pop("train"), "task 'color' has no train file"),
    (lambda b: b["tasks"][1].update(eval="shape/missing.json"), "eval file"),
    (lambda b: b["eval_only"][0].update(train="color/train.json"), "eval_only task 'arithmetic' is never trained"),
    (lambda b: b["tasks"].append("textvqa"), "not a name (got 'textvqa')"),
    (lambda b: b["tasks"][0].update(scorer="vqaa"), "Did you mean 'vqa'"),
    (lambda b: b["tasks"][1].update(name="color"), "distinct"),
    (lambda b: b.update(base={"tasks": ["describe"]}), "no base-stage data"),
])
def test_config_mistakes_are_one_line_and_write_nothing(stream, tmp_path, change, expected):
    config = edit(stream / "stream.yaml", change)
    out = tmp_path / "run"
    line = one_line_error(run(str(config), f"model.name={stream / 'model'}", *FAST, "--out", str(out)))
    assert expected in line
    assert not out.exists()
    assert expected in one_line_error(CliRunner().invoke(app, ["validate", str(config)]))


def test_a_bad_record_is_found_before_anything_is_written(stream, tmp_path):
    records = json.loads((stream / "shape" / "train.json").read_text())
    records[5]["conversations"][1]["value"] = ""
    records[9]["conversations"] = records[9]["conversations"][:1]
    (stream / "shape" / "train.json").write_text(json.dumps(records))
    out = tmp_path / "run"
    line = one_line_error(run(str(stream / "stream.yaml"), f"model.name={stream / 'model'}", *FAST, "--out", str(out)))
    assert "shape/train.json: record 5 (id 'shape-train-5')" in line and "and 1 more record without an answer" in line
    assert not out.exists()


def test_a_missing_image_is_found_before_training(stream, tmp_path):
    (stream / "images" / "color" / "val" / "color-eval-2.png").unlink()
    out = tmp_path / "run"
    line = one_line_error(run(str(stream / "stream.yaml"), f"model.name={stream / 'model'}", *FAST, "--out", str(out)))
    assert "color/val.json: record 2" in line and "color-eval-2.png" in line
    assert not out.exists()


def test_a_pool_of_files(stream, tmp_path):
    def to_pool(b):
        b["name"] = "pool_files"
        b["tasks"][1].pop("eval")  # a dataset without an eval file is trained on, not a column

    config = edit(stream / "stream.yaml", to_pool)
    out = tmp_path / "pool"
    overrides = ["scenario=pool", "pool.budget=12", f"model.name={stream / 'model'}", *FAST]
    result = run(str(config), *overrides, "--out", str(out))
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["datasets"] == ["color", "shape"] and results["skills"] == ["color", "arithmetic"]
    assert [row["train_samples"] for row in results["rows"]] == [12, 12]
