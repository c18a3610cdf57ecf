"""``mcit sweep`` on the tiny stream: cells, orders, the shared base stage, resuming, refusals, the report."""

from __future__ import annotations

import csv
import json

import pytest
import yaml
from typer.testing import CliRunner

from conftest import one_line_error, tiny_overrides
from mcit.cli import app
from mcit.errors import UserError
from mcit.run_setup import Progress
from mcit.sweep import SWEEP_FILE, parse_method, plan_sweep, run_sweep, split_methods, task_order

METHODS = ["seqft", "[{name: er, buffer_per_task: 8}]"]
LABELS = ["seqft", "er-buffer_per_task=8"]


class Interrupt(Exception):
    """Raised from a progress callback to simulate a sweep killed mid-way."""


def overrides() -> list[str]:
    return tiny_overrides(threads=1, save_models="false")


class Recorder:
    """Records each cell's status and every progress phase (by cell); optionally raises at one phase of one cell."""

    def __init__(self, stop_at: tuple[int, str] | None = None):
        self.statuses: list[str] = []
        self.phases: list[tuple[int, str]] = []
        self.stop_at = stop_at

    def on_cell(self, index, cell, status):
        self.statuses.append(status)

    def progress(self) -> Progress:
        def phase(description, total):
            index = len(self.statuses) - 1
            self.phases.append((index, description))
            if self.stop_at is not None and index == self.stop_at[0] and description.startswith(self.stop_at[1]):
                raise Interrupt(description)
            return lambda advance: None

        return Progress(phase=phase)


def sweep(out, recorder: Recorder, methods=METHODS, seeds=(0, 1), orders=(0, 1)):
    plan = plan_sweep(None, overrides(), list(methods), list(seeds), list(orders), out)
    return plan, run_sweep(plan, recorder.progress(), recorder.on_cell)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """2 methods x 2 seeds x 2 orders of the tiny stream."""
    out = tmp_path_factory.mktemp("sweep") / "grid"
    recorder = Recorder()
    plan, outcomes = sweep(out, recorder)
    return out, plan, outcomes, recorder


def snapshot(out, paths) -> dict[str, tuple[int, bytes]]:
    return {p: ((out / p / "results.json").stat().st_mtime_ns, (out / p / "results.json").read_bytes()) for p in paths}


def test_sweep_runs_every_cell_with_its_order_and_one_base_stage_per_seed(swept):
    out, plan, outcomes, recorder = swept
    description = json.loads((out / SWEEP_FILE).read_text(encoding="utf-8"))
    paths = [f"seed{s}/order{k}/{label}" for s in (0, 1) for k in (0, 1) for label in LABELS]
    assert [cell["path"] for cell in description["cells"]] == paths
    assert recorder.statuses == ["run"] * 8
    assert description["grid"]["orders"] == {"0": ["color", "count"], "1": ["count", "color"]}
    for cell, results in zip(description["cells"], outcomes):
        on_disk = json.loads((out / cell["path"] / "results.json").read_text(encoding="utf-8"))
        assert on_disk["complete"] is True and on_disk["matrix"] == results["matrix"]
        assert on_disk["tasks"] == cell["tasks"] == description["grid"]["orders"][str(cell["order"])]
        assert on_disk["methods"] == (["seqft"] if cell["method"] == "seqft" else ["er"])
        config = yaml.safe_load((out / cell["path"] / "config.yaml").read_text(encoding="utf-8"))
        assert config["seed"] == cell["seed"]
        first = f"seed{cell['seed']}/order0/seqft"
        if cell["path"] == first:
            assert cell["base_from"] is None and (out / first / "base_model" / "config.json").is_file()
        else:
            assert cell["base_from"] == first and not (out / cell["path"] / "base_model").exists()
            assert config["model"]["name"] == str(out.resolve() / first / "base_model") and config["benchmark"]["base"] is None
        if cell["method"] != "seqft":
            assert config["method"][0]["buffer_per_task"] == 8
    base_stages = [index for index, description in recorder.phases if description == "base stage"]
    assert base_stages == [0, 4], "the base stage trains once per seed, in its first cell"


def test_rerun_of_a_finished_sweep_skips_every_cell_without_loading_a_model(swept, monkeypatch):
    out, plan, _, _ = swept
    before = snapshot(out, [cell.path for cell in plan.cells])

    def no_model(*args, **kwargs):
        raise AssertionError("a complete cell loaded a model")

    monkeypatch.setattr("mcit.runner.Runner", no_model)
    monkeypatch.setattr("mcit.models.hf.load_vlm", no_model)
    recorder = Recorder()
    sweep(out, recorder)
    assert recorder.statuses == ["complete"] * 8 and recorder.phases == []
    assert snapshot(out, [cell.path for cell in plan.cells]) == before


def test_killed_sweep_resumes_without_redoing_finished_cells(tmp_path):
    out = tmp_path / "grid"
    # Killed in the third cell's second task: two cells done, one half done, one not started.
    with pytest.raises(Interrupt):
        sweep(out, Recorder(stop_at=(2, "task 2/2")), seeds=[0])
    paths = [f"seed0/order{k}/{label}" for k in (0, 1) for label in LABELS]
    finished = snapshot(out, paths[:2])
    assert len(json.loads((out / paths[2] / "results.json").read_text())["rows"]) == 1
    assert not (out / paths[3]).exists()

    recorder = Recorder()
    _, outcomes = sweep(out, recorder, seeds=[0])
    assert recorder.statuses == ["complete", "complete", "resume", "run"]
    assert {index for index, _ in recorder.phases} == {2, 3}, "finished cells ran nothing"
    resumed = [d for index, d in recorder.phases if index == 2]
    assert resumed[0].startswith("task 2/2"), "the interrupted cell resumes after its committed task"
    assert "base stage" not in [d for _, d in recorder.phases]
    assert snapshot(out, paths[:2]) == finished
    assert all(results["complete"] for results in outcomes)


def test_a_results_changing_setting_in_the_same_directory_is_refused_naming_it(swept, tmp_path):
    out = swept[0]
    before = (out / SWEEP_FILE).read_bytes()
    with pytest.raises(UserError, match=r"another grid; these settings change results: train\.lr 0\.001 -> 0\.01\."):
        plan_sweep(None, [*overrides(), "train.lr=0.01"], METHODS, [0, 1], [0, 1], out)
    assert (out / SWEEP_FILE).read_bytes() == before
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty and holds no sweep"):
        plan_sweep(None, overrides(), METHODS, [0], [0], folder)


def test_a_sweep_grows_by_a_seed_and_a_method_keeping_its_finished_cells(tmp_path):
    out = tmp_path / "grid"
    sweep(out, Recorder(), methods=["seqft"], seeds=[0], orders=[0])
    finished = snapshot(out, ["seed0/order0/seqft"])

    recorder = Recorder()
    sweep(out, recorder, methods=["seqft"], seeds=[0, 1], orders=[0])
    assert recorder.statuses == ["complete", "run"] and snapshot(out, ["seed0/order0/seqft"]) == finished
    description = json.loads((out / SWEEP_FILE).read_text(encoding="utf-8"))
    assert description["grid"]["seeds"] == [0, 1]
    assert [cell["path"] for cell in description["cells"]] == ["seed0/order0/seqft", "seed1/order0/seqft"]

    # A method asked for alone joins the grid; its cells start from each seed's base model.
    recorder = Recorder()
    plan, outcomes = sweep(out, recorder, methods=[METHODS[1]], seeds=[1], orders=[0])
    paths = [f"seed{seed}/order0/{label}" for seed in (0, 1) for label in LABELS]
    assert [cell.path for cell in plan.cells] == paths
    assert recorder.statuses == ["complete", "run", "complete", "run"]
    assert "base stage" not in [description for _, description in recorder.phases]
    assert all(results["complete"] for results in outcomes) and snapshot(out, ["seed0/order0/seqft"]) == finished
    grown = json.loads((out / SWEEP_FILE).read_text(encoding="utf-8"))
    assert [cell["path"] for cell in grown["cells"]] == paths and grown["grid"]["seeds"] == [0, 1]

    # A results-neutral setting may change: the finished cells are kept, not refused.
    neutral = plan_sweep(None, [*overrides(), "eval.batch_size=8"], None, None, None, out)
    recorder = Recorder()
    run_sweep(neutral, recorder.progress(), recorder.on_cell)
    assert recorder.statuses == ["complete"] * 4 and snapshot(out, ["seed0/order0/seqft"]) == finished


def test_bad_method_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "grid"
    with pytest.raises(UserError, match="cell seed0/order0/nosuch: .*nosuch"):
        plan_sweep(None, overrides(), ["seqft", "nosuch"], [0], [0, 1], out)
    line = one_line_error(CliRunner().invoke(app, ["sweep", *overrides(), "--methods", "seqft,[er, nosuch]", "--out", str(out)]))
    assert "nosuch" in line
    assert not out.exists()


def test_orders_are_refused_where_they_cannot_apply(tmp_path):
    with pytest.raises(UserError, match="scenario 'pool' has no task order"):
        plan_sweep(None, ["scenario=pool"], None, None, [0, 1], tmp_path / "a")
    with pytest.raises(UserError, match="it has 1"):
        plan_sweep(None, tiny_overrides(**{"benchmark.tasks": "[color]"}), None, None, [0, 1], tmp_path / "b")
    with pytest.raises(UserError, match="orders 1 and 2 give the same task order"):
        plan_sweep(None, overrides(), None, None, [0, 1, 2], tmp_path / "c")
    with pytest.raises(UserError, match="--seeds"):
        plan_sweep(None, [*overrides(), "seed=3"], None, [0, 1], None, tmp_path / "d")
    assert not any(tmp_path.iterdir())


def test_method_specs_and_task_orders():
    specs = split_methods("seqft,[er, dgg],[{name: er, buffer_per_task: 50}]")
    assert specs == ["seqft", "[er, dgg]", "[{name: er, buffer_per_task: 50}]"]
    assert [parse_method(spec).label for spec in specs] == ["seqft", "er+dgg", "er-buffer_per_task=50"]
    with pytest.raises(UserError, match="empty entry"):
        split_methods("seqft,,er")
    for order in (1, 2, 3):
        positions = task_order(5, order)
        assert sorted(positions) == list(range(5)) and positions != list(range(5))
        assert positions == task_order(5, order), "an order is drawn from K alone"
    assert task_order(5, 0) == list(range(5))


def read_csv(path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_report_of_a_sweep_directory_has_the_group_table(swept, tmp_path):
    out, plan, outcomes, _ = swept
    report = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", str(out), "--out", str(report)])
    assert result.exit_code == 0, result.output
    page = (report / "index.html").read_text(encoding="utf-8")
    assert "Method groups (sweeps)" in page and "groups.csv" in page
    assert [row["run"] for row in read_csv(report / "comparison.csv")] == [cell.path for cell in plan.cells]
    groups = read_csv(report / "groups.csv")
    assert {row["method"] for row in groups} == set(LABELS)
    for row in groups:
        assert row["cells"] == "4/4" and row["n_seeds"] == "2" and row["n_orders"] == "2"
    for label in LABELS:
        values = [100 * r["metrics"]["final_average_accuracy"] for c, r in zip(plan.cells, outcomes) if c.method == label]
        row = next(r for r in groups if r["method"] == label and r["metric"] == "final avg acc")
        assert float(row["mean_over_seeds"]) == pytest.approx(sum(values) / len(values))
        assert float(row["mean_over_orders"]) == pytest.approx(sum(values) / len(values))
    assert "method & metric" in (report / "groups.tex").read_text(encoding="utf-8")


def test_cli_rerun_skips_the_finished_cells_and_prints_each_method(swept):
    out = swept[0]
    result = CliRunner().invoke(app, ["sweep", *overrides(), "--methods", ",".join(METHODS), "--seeds", "0,1", "--orders", "0,1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    output = result.output.replace("\n", " ")
    assert output.count("complete, skipped") == 8
    assert "order 1: count -> color" in output and "(n=2)" in output
