"""`mcit select` on a LLaVA-format pool with a saved tiny model: outputs and user errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mcit.cli import app
from mcit.data.synthetic.tasks import TASKS
from mcit.models.hf import load_vlm


@pytest.fixture(scope="module")
def pool_dir(tmp_path_factory) -> Path:
    """A 60-record pool (color, count, arithmetic) as LLaVA JSON with PNG files, and a tiny model."""
    directory = tmp_path_factory.mktemp("pool")
    (directory / "images").mkdir()
    records = []
    samples = [s for name in ("color", "count", "arithmetic") for s in TASKS.get(name).generate(20, 0, "pool")]
    for sample in samples:
        record = {"id": sample.id, "conversations": [
            {"from": "human", "value": ("<image>\n" if sample.image else "") + sample.prompt},
            {"from": "gpt", "value": sample.answer},
        ]}
        if sample.image is not None:
            sample.image.save(directory / "images" / f"{sample.id}.png")
            record["image"] = f"images/{sample.id}.png"
        records.append(record)
    (directory / "pool.json").write_text(json.dumps(records))
    model, processor = load_vlm("tiny")
    model.save_pretrained(directory / "model")
    processor.save_pretrained(directory / "model")
    return directory


def select(pool_dir: Path, *args: str):
    return CliRunner().invoke(app, ["select", str(pool_dir / "pool.json"), "--model", str(pool_dir / "model"), *args])


def test_lamp_writes_ids_with_cluster_and_score(pool_dir, tmp_path):
    out = tmp_path / "ids.json"
    result = select(pool_dir, "--budget", "15", "--out", str(out), "--option", "dim=256", "--option", "k_grid=[2, 3, 4]")
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    chosen = written["selected"]
    assert len(chosen) == 15 and len({c["id"] for c in chosen}) == 15
    assert all({"id", "cluster", "score"} <= set(c) for c in chosen)
    assert sum(written["selected_per_cluster"].values()) == 15
    assert written["summary"]["k"] in (2, 3, 4)
    assert all(c["score"] in ("perplexity", "image_grounding", "el2n", "entropy") for c in chosen)
    assert not (tmp_path / ".ids-features").exists(), "scratch features are removed"
    again = tmp_path / "again.json"
    select(pool_dir, "--budget", "15", "--out", str(again), "--option", "dim=256", "--option", "k_grid=[2, 3, 4]")
    assert json.loads(again.read_text())["selected"] == chosen, "selection is deterministic for a seed"


def test_random_selector_by_name(pool_dir, tmp_path):
    result = select(pool_dir, "--budget", "5", "--method", "random", "--out", str(tmp_path / "r.json"))
    assert result.exit_code == 0, result.output
    assert len(json.loads((tmp_path / "r.json").read_text())["selected"]) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "0"], "--budget must be positive"),
        (["--budget", "61"], r"--budget 61 is larger than the pool \(60 samples"),
        (["--budget", "5", "--method", "lamb"], "Did you mean 'lamp'"),
        (["--budget", "5", "--option", "k_grids=[2]"], "selector 'lamp': k_grids: Extra inputs are not permitted"),
    ],
)
def test_bad_arguments_give_one_line(pool_dir, tmp_path, args, message):
    result = select(pool_dir, *args, "--out", str(tmp_path / "x.json"))
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert __import__("re").search(message, result.stderr)
    assert not (tmp_path / "x.json").exists()


def test_missing_pool_and_bad_model_are_user_errors(pool_dir, tmp_path):
    missing = CliRunner().invoke(app, ["select", str(tmp_path / "nope.json"), "--model", str(pool_dir / "model"), "--budget", "3"])
    assert missing.exit_code == 2 and "nope.json" in missing.stderr
    not_a_model = CliRunner().invoke(app, ["select", str(pool_dir / "pool.json"), "--model", str(tmp_path), "--budget", "3"])
    assert not_a_model.exit_code == 2 and "is not 'tiny' nor a model directory" in not_a_model.stderr


def test_ids_keep_their_json_type_and_no_loading_bar_is_printed(pool_dir, tmp_path):
    from transformers.utils import logging as hf_logging

    records = json.loads((pool_dir / "pool.json").read_text())
    for number, record in enumerate(records[::2]):  # every other record numbered, as many files do
        record["id"] = number
    pool = tmp_path / "pool.json"
    pool.write_text(json.dumps(records))
    out = tmp_path / "ids.json"
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()  # as a fresh process has it: select must switch transformers' bars off itself
    try:
        result = CliRunner().invoke(app, [
            "select", str(pool), "--model", str(pool_dir / "model"), "--image-root", str(pool_dir),
            "--budget", str(len(records)), "--method", "random", "--out", str(out),
        ])
    finally:
        (hf_logging.enable_progress_bar if bars_were_on else hf_logging.disable_progress_bar)()
    assert result.exit_code == 0, result.output
    assert "Loading weights" not in result.output + result.stderr
    chosen = [entry["id"] for entry in json.loads(out.read_text())["selected"]]
    assert sorted(map(repr, chosen)) == sorted(repr(r["id"]) for r in records), "3 stays 3, not '3'"
