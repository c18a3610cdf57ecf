"""Every model family through mcit's one code path: parts, one-pass labels, a file stream from the CLI.

Each family is a tiny random checkpoint of its real transformers classes (``tests/vlm_families.py``),
saved with ``save_pretrained`` and loaded by :func:`mcit.models.hf.load_vlm`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForImageTextToText
from typer.testing import CliRunner

from mcit.cli import app
from mcit.data.collate import IGNORE_INDEX, Collator
from mcit.data.sample import Sample
from mcit.data.synthetic.files import write_example_stream
from mcit.data.synthetic.tasks import TASKS, corpus
from mcit.evaluation.generate import generate_answers
from mcit.losses import answer_loss
from mcit.models.hf import configure_trainable, load_vlm, parameter_table, part_of
from vlm_families import FAMILIES

NAMES = sorted(FAMILIES)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {name: FAMILIES[name](root / name, corpus=corpus()[:200]) for name in NAMES}


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("stream")
    write_example_stream(directory, train_per_task=8, eval_per_task=4)
    return directory


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add overhead on a shared machine
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", NAMES)
def test_parts_follow_the_family_layout(name, checkpoints):
    model, _ = load_vlm(checkpoints[name])
    expected = {"vision": "vision", "projector": "projector", "language_model": "language_model", "lm_head": "language_model"}
    for parameter_name, _ in model.named_parameters():
        (group,) = [g for g, prefixes in FAMILIES[name].prefixes.items() if parameter_name.startswith(prefixes)]
        assert part_of(parameter_name) == expected[group], parameter_name
    configure_trainable(model, ["projector"])
    table = {part: (total, trainable) for part, total, trainable in parameter_table(model)}
    assert set(table) == {"vision", "projector", "language_model"}
    assert table["projector"][1] == table["projector"][0] > 0
    assert table["vision"][1] == table["language_model"][1] == 0


@pytest.mark.parametrize("name", NAMES)
def test_labels_are_the_assistant_turns_of_one_pass(name, checkpoints):
    model, processor = load_vlm(checkpoints[name])
    family = FAMILIES[name]
    image = TASKS.get("color").generate(1, 0, "eval")[0].images[0]
    chat = Sample("chat", "And again?", "blue", (image,), history=(("Which color?", "red"),))
    text = Sample("text", "What is 2 plus 3?", "5")
    collator = Collator(processor)
    batch = collator.train_batch([chat, text])
    tokenizer = processor.tokenizer
    for row, replies in enumerate((["red", "blue"], ["5"])):
        labelled = batch.labels[row][batch.labels[row] != IGNORE_INDEX]
        decoded = tokenizer.decode(labelled)
        for reply in replies:
            assert reply in decoded
        assert decoded.count(family.end_of_turn) == len(replies)  # every turn ends with the family's marker
        assert tokenizer.decode(labelled, skip_special_tokens=True).split() == " ".join(replies).split()
        positions = (batch.labels[row] != IGNORE_INDEX).nonzero().flatten()
        assert torch.equal(batch.inputs["input_ids"][row, positions], labelled)  # labels are the input tokens there
    loss = answer_loss(model(**batch.inputs).logits, batch.labels)
    assert torch.isfinite(loss)
    answers = generate_answers(model, collator, [chat, text], max_new_tokens=3)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


def run(*args: str):
    return CliRunner().invoke(app, ["run", *args])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("training", ["lora", "projector"])
def test_a_file_stream_from_the_cli(name, training, checkpoints, stream, tmp_path):
    parts = ["model.trainable=[projector]"]
    if training == "lora":
        parts = ["model.trainable=[]", "model.lora={r: 4}"]
    out = tmp_path / "run"
    result = run(
        str(stream / "stream.yaml"), f"model.name={checkpoints[name]}", *parts,
        "train.epochs=1", "train.batch_size=4", "eval.batch_size=8", "threads=1", "--out", str(out),
    )
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert [row["after"] for row in results["rows"]] == ["color", "shape"]
    assert all(set(row["scores"]) == {"color", "shape", "arithmetic"} for row in results["rows"])
    trained = {row["part"]: row["trainable"] for row in results["parameters"] if row["trainable"]}
    assert set(trained) == ({"lora"} if training == "lora" else {"projector"})
    # The trained model in its standard form, and exported as a plain model.
    checkpoint = out / "checkpoints" / "task-002"
    base = AutoModelForImageTextToText.from_pretrained(checkpoints[name])
    if training == "lora":
        adapted = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(checkpoints[name]), checkpoint / "adapter")
        assert any("lora_" in n for n, _ in adapted.named_parameters())
    else:
        assert AutoModelForImageTextToText.from_pretrained(checkpoint / "model").config.model_type == base.config.model_type
    exported = CliRunner().invoke(app, ["export", str(out), "--merge", "--out", str(tmp_path / "exported")])
    assert exported.exit_code == 0, exported.output
    merged = AutoModelForImageTextToText.from_pretrained(tmp_path / "exported")
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    assert {n: p.shape for n, p in merged.named_parameters()} == {n: p.shape for n, p in base.named_parameters()}


@pytest.mark.parametrize("name", NAMES)
def test_lamp_selection_from_the_cli(name, checkpoints, stream, tmp_path):
    """Perplexity, image grounding (a blank image each family accepts) and LAMP's gradients."""
    out = tmp_path / "ids.json"
    result = CliRunner().invoke(app, [
        "select", str(stream / "color" / "train.json"), "--model", str(checkpoints[name]), "--budget", "4",
        "--out", str(out), "--option", "dim=64", "--option", "k_grid=[2]",
    ])
    assert result.exit_code == 0, result.output
    chosen = json.loads(out.read_text())["selected"]
    assert len({c["id"] for c in chosen}) == 4
    assert {c["score"] for c in chosen} <= {"perplexity", "image_grounding", "el2n", "entropy"}


@pytest.mark.parametrize("selector", ["perplexity", "image_grounding", "lamp"])
def test_pool_selectors_on_idefics3(selector, checkpoints, stream, tmp_path):
    """The family that treats all-zero images as padding, through the pool scenario."""
    pool = tmp_path / "pool.yaml"
    pool.write_text((stream / "stream.yaml").read_text().replace("name: files", "name: pool_files", 1))
    # LAMP's gradient features need trainable language-model weights: LoRA here.
    options = ["pool.selector.dim=64", "pool.selector.k_grid=[2]", "model.lora={r: 4}"] if selector == "lamp" else []
    out = tmp_path / "run"
    result = run(
        str(pool), "scenario=pool", f"pool.selector.name={selector}", *options, "pool.budget=6",
        f"model.name={checkpoints['idefics3']}", "model.trainable=[projector]", "benchmark.root=" + str(stream),
        "train.epochs=1", "train.batch_size=4", "eval.batch_size=8", "threads=1", "--out", str(out),
    )
    assert result.exit_code == 0, result.output
    assert [row["train_samples"] for row in json.loads((out / "results.json").read_text())["rows"]] == [6, 6]
