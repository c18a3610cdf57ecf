"""Results usable elsewhere: standard-form checkpoints, `mcit export`, `mcit eval`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForImageTextToText
from typer.testing import CliRunner

from conftest import example_stream
from mcit.cli import app
from mcit.data.collate import Collator
from mcit.data.synthetic.tasks import TASKS
from mcit.evaluation.generate import generate_answers
from mcit.export import trained_model
from mcit.models.saving import load_adapter

TRAIN = ["train.epochs=2", "train.batch_size=8", "train.lr=3e-3", "eval.batch_size=16", "threads=1"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return example_stream(tmp_path_factory.mktemp("data"), train_per_task=16, eval_per_task=6)


def run_stream(data: Path, out: Path, *overrides: str) -> Path:
    result = CliRunner().invoke(app, ["run", str(data / "stream.yaml"), f"model.name={data / 'model'}", *TRAIN, *overrides, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def lora_run(data, tmp_path_factory) -> Path:
    """LoRA on the language model and the projector trained in full, both checkpoints kept."""
    out = tmp_path_factory.mktemp("lora") / "run"
    return run_stream(data, out, "model.trainable=[projector]", "model.lora={r: 4}", "keep_checkpoints=null")


@pytest.fixture(scope="module")
def projector_run(data, tmp_path_factory) -> Path:
    return run_stream(data, tmp_path_factory.mktemp("projector") / "run", "model.trainable=[projector]")


def batch_logits(model, processor) -> torch.Tensor:
    samples = TASKS.get("color").generate(3, 1, "eval") + TASKS.get("arithmetic").generate(2, 1, "eval")
    batch = Collator(processor).train_batch(samples)
    with torch.no_grad():
        return model(**batch.inputs).logits


def test_checkpoints_hold_a_peft_adapter_with_the_trained_projector(lora_run, data):
    trained, processor, meta, _ = trained_model(lora_run, 2)
    assert meta["task"] == "shape"
    adapter = lora_run / "checkpoints" / "task-002" / "adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    base = AutoModelForImageTextToText.from_pretrained(data / "model")
    untouched = batch_logits(base, processor)
    plain = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(data / "model"), adapter)
    complete = load_adapter(AutoModelForImageTextToText.from_pretrained(data / "model"), adapter)
    expected = batch_logits(trained, processor)
    assert not torch.allclose(untouched, expected, atol=1e-4), "training changed the model"
    assert torch.allclose(batch_logits(complete, processor), expected, atol=1e-5)
    # PeftModel alone restores the adapters but not the projector, which lives beside them.
    assert not torch.allclose(batch_logits(plain, processor), expected, atol=1e-4)


def test_export_merge_is_a_plain_model_that_behaves_like_the_run(lora_run, tmp_path):
    result = CliRunner().invoke(app, ["export", str(lora_run), "--merge", "--out", str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output
    assert "model after task 2 (shape)" in result.output
    merged = AutoModelForImageTextToText.from_pretrained(tmp_path / "merged")
    trained, processor, _, _ = trained_model(lora_run)
    assert torch.allclose(batch_logits(merged, processor), batch_logits(trained, processor), atol=1e-4)
    earlier = CliRunner().invoke(app, ["export", str(lora_run), "--task", "1", "--out", str(tmp_path / "first")])
    assert earlier.exit_code == 0 and "adapter after task 1 (color)" in earlier.output
    assert (tmp_path / "first" / "adapter_config.json").is_file()


def test_eval_scores_an_exported_model_like_the_run_did(projector_run, data, tmp_path):
    assert (projector_run / "checkpoints" / "task-002" / "model" / "config.json").is_file()
    exported = tmp_path / "exported"
    assert CliRunner().invoke(app, ["export", str(projector_run), "--out", str(exported)]).exit_code == 0
    out = tmp_path / "scores.json"
    result = CliRunner().invoke(app, ["eval", str(data / "stream.yaml"), "--model", str(exported), "eval.batch_size=16", "--out", str(out)])
    assert result.exit_code == 0, result.output
    scored = json.loads(out.read_text())
    results = json.loads((projector_run / "results.json").read_text())
    assert scored["columns"] == ["color", "shape", "arithmetic"]
    assert scored["scores"] == results["rows"][-1]["scores"]
    trained, processor, _, _ = trained_model(projector_run)
    eval_set = TASKS.get("color").generate(6, 0, "eval")
    expected = generate_answers(trained, Collator(processor), eval_set, max_new_tokens=6)
    color = scored["evaluations"]["color"]
    assert [p["prediction"] for p in color["samples"]] == expected
    assert color["score"] == scored["scores"]["color"] == sum(p["score"] for p in color["samples"]) / len(expected)


def test_eval_takes_an_adapter_directory(lora_run, data, tmp_path):
    out = tmp_path / "scores.json"
    adapter = lora_run / "checkpoints" / "task-002" / "adapter"
    result = CliRunner().invoke(app, ["eval", str(data / "stream.yaml"), "--model", str(adapter), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["scores"] == json.loads((lora_run / "results.json").read_text())["rows"][-1]["scores"]


@pytest.mark.parametrize("args, message", [
    (lambda run, tmp: ["export", str(tmp), "--out", str(tmp / "x")], "is not a run directory"),
    (lambda run, tmp: ["export", str(run), "--task", "3", "--out", str(tmp / "x")], "kept no checkpoint after task 3 (kept: 2)"),
    (lambda run, tmp: ["export", str(run), "--out", str(run)], "is not an empty directory"),
    (lambda run, tmp: ["export", str(run), "--task", "0", "--out", str(tmp / "x")], "--task counts from 1"),
    (lambda run, tmp: ["eval", "--model", str(tmp)], "it has no config.json"),
])
def test_mistakes_are_one_line(projector_run, tmp_path, args, message):
    result = CliRunner().invoke(app, args(projector_run, tmp_path))
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert not (tmp_path / "x").exists()


def test_a_merging_lora_run_saves_and_exports_whole_models_that_score_like_the_run(data, tmp_path):
    """After a merge the adapter alone misses the earlier tasks: checkpoints and export write the whole model."""
    run = run_stream(data, tmp_path / "run", "method=[lora]", "model.trainable=[]", "model.lora={r: 4}")
    checkpoint = run / "checkpoints" / "task-002"
    assert (checkpoint / "model" / "config.json").is_file() and not (checkpoint / "adapter").exists()
    exported = tmp_path / "exported"
    result = CliRunner().invoke(app, ["export", str(run), "--out", str(exported)])
    assert result.exit_code == 0 and "model after task 2" in result.output, result.output
    trained, processor, _, strategy = trained_model(run)
    assert len(strategy.strategies[0][1].merged) == 2
    base = AutoModelForImageTextToText.from_pretrained(data / "model")
    for directory in (exported, checkpoint / "model"):
        plain = AutoModelForImageTextToText.from_pretrained(directory)
        assert torch.allclose(batch_logits(plain, processor), batch_logits(trained, processor), atol=1e-4)
    assert not torch.allclose(batch_logits(base, processor), batch_logits(trained, processor), atol=1e-4)
    out = tmp_path / "scores.json"
    assert CliRunner().invoke(app, ["eval", str(data / "stream.yaml"), "--model", str(exported), "--out", str(out)]).exit_code == 0
    assert json.loads(out.read_text())["scores"] == json.loads((run / "results.json").read_text())["rows"][-1]["scores"]
