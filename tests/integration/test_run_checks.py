"""Nothing is written before the checks that need no compute have passed (``mcit run``).

Each bad input is one line on stderr and exit 2 with no file left behind, and the re-run
with the input fixed, into the same directory (the default one included), succeeds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import one_line_error, tiny_overrides
from mcit.cli import app

POOL = [
    "scenario=pool", "benchmark.tasks=[colors, counting]", "benchmark.eval_only=[]", "benchmark.train_per_task=24",
    "benchmark.eval_per_task=6", "benchmark.base.samples_per_task=16", "benchmark.base.train.epochs=1",
    "train.epochs=1", "train.batch_size=16", "eval.batch_size=16",
]


def run(*args: str):
    return CliRunner().invoke(app, ["run", *args])


def succeeded(run_dir: Path) -> bool:
    return json.loads((run_dir / "results.json").read_text())["complete"] is True


def test_unknown_task_name_writes_nothing_and_the_fixed_rerun_succeeds(tmp_path):
    out = tmp_path / "run"
    line = one_line_error(run(*tiny_overrides(**{"benchmark.tasks": "[color, colr]"}), "--out", str(out)))
    assert "colr" in line and "Did you mean 'color'" in line
    assert not out.exists()
    assert run(*tiny_overrides(), "--out", str(out)).exit_code == 0
    assert succeeded(out)


def test_default_run_directory_is_usable_after_a_refused_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    one_line_error(run(*tiny_overrides(**{"benchmark.eval_only": "[arithmetc]"})))
    assert not (tmp_path / "runs").exists()
    assert run(*tiny_overrides()).exit_code == 0
    assert succeeded(tmp_path / "runs" / "embedded-seqft-seed0")


@pytest.mark.parametrize("problem", ["empty directory", "pickle weights only", "missing path", "unloadable"])
def test_a_model_path_without_a_loadable_model_writes_nothing(tmp_path, problem):
    model = tmp_path / "model"
    if problem != "missing path":
        model.mkdir()
    if problem == "pickle weights only":
        (model / "config.json").write_text(json.dumps({"model_type": "llava"}))
        (model / "pytorch_model.bin").write_bytes(b"not loaded")
    if problem == "unloadable":  # passes the file checks, fails inside transformers
        (model / "config.json").write_text(json.dumps({"model_type": "llava"}))
        (model / "model.safetensors").write_bytes(b"\x00" * 16)
    out = tmp_path / "run"
    line = one_line_error(run(*tiny_overrides(**{"model.name": str(model), "benchmark.base": "null"}), "--out", str(out)))
    assert str(model) in line
    assert not out.exists()


def test_the_fixed_model_path_reruns_into_the_same_directory(tmp_path):
    out = tmp_path / "run"
    one_line_error(run(*tiny_overrides(**{"model.name": str(tmp_path / "nowhere")}), "--out", str(out)))
    assert not out.exists()
    assert run(*tiny_overrides(), "--out", str(out)).exit_code == 0
    assert succeeded(out)


def test_a_pool_budget_larger_than_the_first_pool_writes_nothing(tmp_path):
    out = tmp_path / "run"
    line = one_line_error(run(*POOL, "pool.budget=25", "--out", str(out)))
    assert "pool.budget=25" in line and "24 samples" in line
    assert not out.exists()
    assert run(*POOL, "pool.budget=12", "--out", str(out)).exit_code == 0
    assert succeeded(out)


def test_an_out_that_is_a_file_is_one_line(tmp_path):
    out = tmp_path / "run"
    out.write_text("mine")
    assert "is a file" in one_line_error(run(*tiny_overrides(), "--out", str(out)))
    assert out.read_text() == "mine"
    inside = one_line_error(run(*tiny_overrides(), "--out", str(out / "sub")))
    assert "is a file" in inside and out.read_text() == "mine"


def test_an_unwritable_directory_is_one_line(tmp_path, monkeypatch):
    # Root may write anywhere, so the permission is denied through os.access for this test.
    parent = tmp_path / "read-only"
    parent.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == parent else real_access(path, mode))
    line = one_line_error(run(*tiny_overrides(), "--out", str(parent / "run")))
    assert "not writable" in line and str(parent) in line
    assert list(parent.iterdir()) == []
