"""Every published stream validates and runs end to end on a fake copy of its folder layout."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from conftest import one_line_error
from mcit.benchmarks.data_check import check_data
from mcit.benchmarks.published import published_path, published_streams
from mcit.cli import app
from mcit.config import load_config
from mcit.runner import Runner
from published_layouts import write_layout

STREAMS = published_streams()
# Shrink a published stream to seconds on the tiny model (its own training recipe is for 7B models).
TINY = [
    "model.name=tiny", "model.lora=null", "train.epochs=1", "train.batch_size=4", "eval.batch_size=8",
    "benchmark.train_per_task=6", "benchmark.eval_per_task=4", "save_models=false",
]  # fmt: skip


def test_the_streams_the_field_compares_on_are_shipped():
    assert STREAMS == [
        "coin", "dgg_custom", "lamp_lifelong", "llava_task_groups", "mcitlib_acl", "mcitlib_dcl", "ucit", "vqav2_types",
    ]  # fmt: skip


@pytest.mark.parametrize("name", STREAMS)
def test_published_stream_needs_its_data_folder(name):
    line = one_line_error(CliRunner().invoke(app, ["validate", name]))
    assert f"stream {name!r} reads your copy of its data: add benchmark.root=" in line


@pytest.mark.slow
@pytest.mark.parametrize("name", STREAMS)
def test_published_stream_validates_and_runs_on_a_fake_copy_of_its_layout(name, tmp_path, monkeypatch):
    # Caption tasks are scored after every step; starting METEOR's JVM each time would make
    # this test minutes long. The Java path is tested in tests/unit/test_caption_scorer.py.
    monkeypatch.setattr("mcit.evaluation.scorers.captions.java_available", lambda: False)
    data = tmp_path / "data"
    shipped = yaml.safe_load(published_path(name).read_text())
    write_layout(data, shipped["benchmark"])
    pool = ["pool.budget=4"] if shipped.get("scenario") == "pool" else []
    result = CliRunner().invoke(app, ["validate", name, f"benchmark.root={data}"])
    assert result.exit_code == 0, result.output
    config = load_config(name, [f"benchmark.root={data}", *TINY, *pool])
    assert config.stream is not None and config.stream.title
    check = CliRunner().invoke(app, ["data", "check", name, f"benchmark.root={data}"])
    assert check.exit_code == 0, check.output
    results = Runner(config, tmp_path / "run").run()
    assert results["complete"]
    steps = len(config.benchmark.tasks)
    assert len(results["rows"]) == steps
    assert all(0.0 <= v for row in results["matrix"] for v in row)
    evaluations = json.loads((tmp_path / "run" / "evaluations" / f"{steps:02d}-{config.benchmark.task_names()[-1]}.json").read_text())
    for task in config.benchmark.tasks + config.benchmark.eval_only:
        if task.eval is not None:
            record = evaluations[task.name]
            assert record["scorer"] == task.scorer and len(record["samples"]) == 4
            if task.answers_file is not None and task.answers_format == "by_question_id":
                assert len(record["samples"][0]["references"]) == 10  # the separate file's answers were read
            # The paper's script scored the same answers beside mcit's scorer.
            assert record.get("paper_scorer") == task.paper_scorer
            if task.paper_scorer is not None:
                assert 0.0 <= record["paper_score"] and all("paper_score" in sample for sample in record["samples"])
    paper_columns = {task.name for task in config.benchmark.tasks + config.benchmark.eval_only if task.paper_scorer}
    if paper_columns:
        paper = results["paper"]
        assert {name for name, scorer in paper["scorers"].items() if scorer} == paper_columns
        assert len(paper["matrix"]) == steps and all(len(row) == len(paper["columns"]) for row in paper["matrix"])
        assert all(row["paper_scores"].keys() == set(paper["columns"]) for row in results["rows"])
    else:
        assert "paper" not in results


# What each toolkit trains (the sources are cited in each YAML): the LLaVA forks (CoIN, MCITlib,
# HiDe-LLaVA, CL-MoE, LLaVA-1.5's task LoRA) freeze the vision tower and train LoRA on the language
# model and the projector; Prismatic's fine-tune stage trains the projector and the whole LLM.
TRAINED_PARTS = {name: (["projector"], True) for name in STREAMS}
TRAINED_PARTS["llava_task_groups"] = (["projector", "language_model"], False)


@pytest.mark.parametrize("name", STREAMS)
def test_published_stream_trains_what_its_toolkit_trains(name):
    model = yaml.safe_load(published_path(name).read_text())["model"]
    parts, lora = TRAINED_PARTS[name]
    assert model["trainable"] == parts
    assert ("lora" in model) == lora
    if lora:
        assert model["lora"]["alpha"] == 2 * model["lora"]["r"] and model["lora"]["dropout"] == 0.05


@pytest.fixture
def coin_copy(tmp_path):
    data = tmp_path / "coin"
    write_layout(data, yaml.safe_load(published_path("coin").read_text())["benchmark"])
    return data


def coin_check(data):
    return CliRunner().invoke(app, ["data", "check", "coin", f"benchmark.root={data}"])


def test_data_check_finds_a_missing_image_in_a_published_layout(coin_copy):
    images = sorted((coin_copy / "gqa_images" / "eval").glob("*.png"))
    images[0].unlink()
    images[2].unlink()
    line = one_line_error(coin_check(coin_copy))
    assert "GQA/test.json" in line and f"no such file {images[0]}" in line and "and 1 more record with a missing image file" in line


def test_data_check_finds_a_corrupt_image_in_a_published_layout(coin_copy):
    image = sorted((coin_copy / "textvqa_images" / "train").glob("*.png"))[3]
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    line = one_line_error(coin_check(coin_copy))
    assert "TextVQA/train.json" in line and "record 3" in line and f"cannot read {image}" in line


def test_data_check_counts_repeated_eval_ids_and_refuses_repeated_train_ids(coin_copy):
    path = coin_copy / "Instructions_Original" / "VQAv2" / "val.json"
    records = json.loads(path.read_text())
    records[4]["question_id"] = records[1]["question_id"]
    path.write_text(json.dumps(records))
    report = check_data(load_config("coin", [f"benchmark.root={coin_copy}"]).benchmark)
    repeated = {(f.task, f.role): f.repeated_ids for f in report.files if f.repeated_ids}
    assert repeated == {("vqav2", "eval"): 1}  # an evaluation record is its position
    path = coin_copy / "Instructions_Original" / "VQAv2" / "train.json"
    records = json.loads(path.read_text())
    records[4]["id"] = records[1]["id"]
    path.write_text(json.dumps(records))
    line = one_line_error(coin_check(coin_copy))
    assert "VQAv2/train.json" in line and "record 4" in line and "duplicate of record 1" in line


def test_ls_benchmarks_lists_each_stream_with_its_files_and_data_source():
    result = CliRunner().invoke(app, ["ls", "benchmarks"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for name in STREAMS:
        shipped = yaml.safe_load(published_path(name).read_text())
        assert f"{name}: {shipped['stream']['title']}" in result.output
        first = shipped["benchmark"]["tasks"][0]
        assert first.get("train") in result.output
    assert "huggingface.co/datasets/Zacks-Chen/CoIN" in result.output
    summary = CliRunner().invoke(app, ["ls"], env={"COLUMNS": "250"})
    assert "scienceqa -> textvqa -> imagenet -> gqa -> vizwiz -> grounding -> vqav2 -> ocrvqa" in summary.output
