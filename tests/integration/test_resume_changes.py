"""Resuming a run with other settings, on other data, into a folder that is not a run, and the
growth figure of a resumed run: tiny runs stopped after a task and resumed."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from conftest import example_stream, one_line_error
from mcit.cli import app
from mcit.config import load_config
from mcit.errors import UserError
from mcit.report.runs import load_runs
from mcit.report.tables import cost_table
from mcit.run_changes import CHANGES_FILE
from mcit.run_setup import Progress
from mcit.runner import Runner
from mcit.store import RunStore


class Interrupt(Exception):
    """Raised from a progress callback: the run stops there, as a killed one would."""


def stop_at(prefix: str) -> Progress:
    def phase(description: str, total: int):
        if description.startswith(prefix):
            raise Interrupt(description)
        return lambda advance: None

    return Progress(phase=phase)


def stopped_after_task_1(config, run_dir) -> dict:
    with pytest.raises(Interrupt):
        Runner(config, run_dir, stop_at("task 2/")).run()
    results = RunStore(run_dir).read_results()
    assert len(results["rows"]) == 1
    return results


def changes(run_dir) -> list[dict]:
    path = run_dir / CHANGES_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_results_neutral_change_resumes_and_is_recorded(tmp_path, tiny_config):
    """The fix after running out of memory: smaller micro-batches and evaluation batches."""
    run_dir = tmp_path / "run"
    first = stopped_after_task_1(tiny_config(), run_dir)
    smaller = tiny_config(**{"train.micro_batch_size": 8, "eval.batch_size": 8})
    messages: list[str] = []
    results = Runner(smaller, run_dir, Progress(message=messages.append)).run()

    assert results["complete"] is True and results["rows"][0] == first["rows"][0]
    assert any("results-neutral changes from step 2" in m and "train.micro_batch_size 0 -> 8" in m for m in messages), messages
    (record,) = changes(run_dir)
    assert record["from_step"] == 2 and record["forced"] is False
    assert {c["key"] for c in record["config"]} == {"train.micro_batch_size", "eval.batch_size"}
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["train"]["micro_batch_size"] == 8 and saved["eval"]["batch_size"] == 8, "config.yaml still describes the results"


def test_a_results_changing_change_is_refused_naming_its_values_and_forced_ones_are_recorded(tmp_path, tiny_config):
    run_dir = tmp_path / "run"
    stopped_after_task_1(tiny_config(), run_dir)
    config_before = (run_dir / "config.yaml").read_bytes()
    other = tiny_config(**{"train.lr": 5e-4})
    with pytest.raises(UserError, match=r"different config; these settings change results: train\.lr 0\.001 -> 0\.0005"):
        Runner(other, run_dir).run()
    assert changes(run_dir) == [] and (run_dir / "config.yaml").read_bytes() == config_before, "a refusal writes nothing"

    assert Runner(other, run_dir, force=True).run()["complete"] is True
    assert (run_dir / "config.yaml").read_bytes() == config_before, "config.yaml keeps describing the first task"
    (record,) = changes(run_dir)
    assert record["forced"] is True and record["from_step"] == 2
    assert record["config"] == [{"key": "train.lr", "old": 1e-3, "new": 5e-4, "neutral": False}]
    # The run now goes on with the forced settings: the same command is no change (no --force, no new record).
    Runner(other, run_dir).run()
    assert len(changes(run_dir)) == 1
    with pytest.raises(UserError, match=r"train\.lr 0\.0005 -> 0\.001"):
        Runner(tiny_config(), run_dir).run()


def test_a_data_file_changed_since_the_run_started_is_named_on_resume(tmp_path):
    stream = example_stream(tmp_path / "data", train_per_task=16, eval_per_task=6)
    run_dir = tmp_path / "run"
    args = ["run", str(stream / "stream.yaml"), f"model.name={stream / 'model'}", "train.epochs=1", "train.batch_size=8",
            "eval.batch_size=16", "--out", str(run_dir)]
    config = load_config(stream / "stream.yaml", args[2:6])
    stopped_after_task_1(config, run_dir)
    train_file = stream / "shape" / "train.json"  # the second task's: read again when the run resumes
    size = train_file.stat().st_size
    train_file.write_text(json.dumps(json.loads(train_file.read_text())[:-4]))  # four records fewer, still valid JSON
    relative = "shape/train.json"

    error = one_line_error(CliRunner().invoke(app, args))
    assert f"data changed since the run started: {relative} ({size} -> {train_file.stat().st_size} bytes)" in error, error
    assert changes(run_dir) == []
    result = CliRunner().invoke(app, [*args, "--force"])
    assert result.exit_code == 0, result.output
    (record,) = changes(run_dir)
    assert record["forced"] is True and record["data"] == [{"file": relative, "change": f"{size} -> {train_file.stat().st_size} bytes"}]


def test_a_folder_that_holds_no_run_is_not_written_into_unless_forced(tmp_path, tiny_config):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes")
    error = one_line_error(CliRunner().invoke(app, ["run", "--out", str(folder)]))
    assert "not empty and holds no mcit run" in error and "notes.txt" in error
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    with pytest.raises(Interrupt):  # with --force it goes on, into the base stage
        Runner(tiny_config(), folder, stop_at("base stage"), force=True).run()
    assert (folder / "config.yaml").is_file() and (folder / "notes.txt").read_text() == "my notes"


@pytest.mark.parametrize(("tasks", "stop"), [("[color, count]", "task 2/"), ("[color, count, shape]", "task 3/")])
def test_olora_growth_after_a_resume_equals_the_uninterrupted_runs(tmp_path, tiny_config, tasks, stop):
    """The restart re-adds the finished tasks' adapters; the growth comes from the sizes the rows recorded."""
    config = tiny_config(method="[olora]", **{"model.trainable": "[]", "benchmark.tasks": tasks})
    straight = Runner(config, tmp_path / "straight").run()
    with pytest.raises(Interrupt):
        Runner(config, tmp_path / "resumed", stop_at(stop)).run()
    resumed = Runner(config, tmp_path / "resumed").run()

    growth = {row["run"]: row["model_growth"] for row in cost_table(load_runs([tmp_path / "straight", tmp_path / "resumed"])).rows}
    adapter = straight["rows"][1]["trained_parameters"]
    steps = len(straight["rows"])
    assert growth == {"straight": (steps - 1) * adapter, "resumed": (steps - 1) * adapter}, "task 0 trains model.lora's adapter"
    assert [(r["model_parameters_before"], r["model_parameters"]) for r in resumed["rows"]] == [
        (r["model_parameters_before"], r["model_parameters"]) for r in straight["rows"]
    ]
