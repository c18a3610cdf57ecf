"""Every published stream validates and runs end to end on a fake copy of its folder layout."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import one_line_error
from published_layouts import write_layout
from typer.testing import CliRunner

from mcit.benchmarks.published import published_path, published_streams
from mcit.cli import app
from mcit.config import load_config
from mcit.runner import Runner

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
def test_published_stream_validates_and_runs_on_a_fake_copy_of_its_layout(name, tmp_path):
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
