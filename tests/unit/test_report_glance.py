"""``mcit report``'s "At a glance" section on hand-written runs: per-task overlays, accuracy
against forgetting, the config table and its CSV (no training; the browser test is in
tests/integration/test_report_html.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from mcit.report import glance as glance_module
from mcit.report import write_report
from mcit.report.glance import DIFF_CSV, SCATTER_PNG, scatter_points
from mcit.report.groups import SweepCell, group_table
from mcit.report.overlay_figures import task_curves
from mcit.report.runs import load_runs, matrix_view

CONFIG = {"seed": 0, "model": {"name": "tiny", "trainable": ["vision", "projector", "language_model"], "lora": None},
          "method": [{"name": "er", "buffer_per_task": 200}], "train": {"lr": 0.001}}


def results(tasks: list[str], final: float, forgetting: float, complete: bool = True, zero_shot: bool = True) -> dict:
    """A stream run over ``tasks`` (then eval-only "lang") whose task k scores 0.9 when trained, 0.5 after."""
    names = tasks + ["lang"]
    rows = [{"after": task, "scores": {name: 0.9 if name == task else 0.5 for name in names}} for task in tasks]
    made = {"scenario": "stream", "tasks": tasks, "eval_only": ["lang"], "methods": ["er"], "complete": complete, "rows": rows,
            "metrics": {"final_average_accuracy": final, "average_forgetting": forgetting}}
    if zero_shot:
        made["zero_shot"] = {name: 0.1 for name in names}
    return made


def write_run(directory: Path, results_: dict, config: dict | None = CONFIG) -> Path:
    directory.mkdir(parents=True)
    (directory / "results.json").write_text(json.dumps(results_), encoding="utf-8")
    if config is not None:
        (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return directory


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_curves_align_by_step_and_mark_the_step_that_trained_each_task():
    curves = task_curves(matrix_view(results(["b", "a"], 0.5, 0.1)), "run", 0)
    assert curves["a"].steps == [0, 1, 2] and curves["a"].trained_at == 2 and curves["b"].trained_at == 1
    assert curves["a"].values == [pytest.approx(10.0), pytest.approx(50.0), pytest.approx(90.0)]
    assert curves["lang"].trained_at is None, "eval-only: never trained"
    without_zero_shot = task_curves(matrix_view(results(["b", "a"], 0.5, 0.1, zero_shot=False)), "run", 0)
    assert without_zero_shot["a"].steps == [1, 2] and without_zero_shot["a"].trained_at == 2


def test_one_figure_per_task_holds_every_run_that_has_the_task(tmp_path, monkeypatch):
    drawn: dict[str, list[str]] = {}
    real = glance_module.task_overlay

    def record(task, curves, groups, eval_only, path):
        drawn[task] = [curve.label for curve in curves]
        return real(task, curves, groups, eval_only, path)

    monkeypatch.setattr(glance_module, "task_overlay", record)
    first = write_run(tmp_path / "first", results(["a", "b"], 0.7, 0.2))
    second = write_run(tmp_path / "second", results(["b", "c"], 0.6, 0.3))
    page = write_report([first, second], tmp_path / "report").read_text(encoding="utf-8")
    assert drawn == {"a": ["first"], "b": ["first", "second"], "lang": ["first", "second"], "c": ["second"]}
    for number, task in enumerate(["a", "b", "lang*", "c"], 1):
        name = f"task{number:02d}-overlay.png"
        assert f'src="{name}"' in page and f"{task}: accuracy (%) in every run" in page
        with Image.open(tmp_path / "report" / name) as image:
            assert image.format == "PNG" and image.width >= 300 and image.height >= 200
    assert f'src="{SCATTER_PNG}"' in page


def test_the_config_table_and_its_csv_show_only_what_differs(tmp_path):
    lora = {**CONFIG, "model": {**CONFIG["model"], "trainable": ["projector"], "lora": {"r": 16, "alpha": 16.0}}}
    full = write_run(tmp_path / "full", results(["a"], 0.7, 0.2))
    small = write_run(tmp_path / "lora-r16", results(["a"], 0.6, 0.1), lora)
    page = write_report([full, small], tmp_path / "report").read_text(encoding="utf-8")
    rows = read_csv(tmp_path / "report" / DIFF_CSV)
    assert [row["setting"] for row in rows] == ["model.trainable", "model.lora"]
    assert rows[1] == {"setting": "model.lora", "changes_results": "true", "full": "null", "lora-r16": "{r: 16, alpha: 16.0}"}
    assert '<code class="key">model.lora</code>' in page and "train.lr" not in page
    assert "All runs share every other setting (5 settings)." in page and DIFF_CSV in page


def test_a_single_run_has_nothing_to_compare(tmp_path):
    only = write_run(tmp_path / "only", results(["a", "b"], 0.7, 0.2))
    page = write_report([only], tmp_path / "report").read_text(encoding="utf-8")
    assert "One run: nothing to compare." in page
    assert not list((tmp_path / "report").glob("task*-overlay.png")) and not (tmp_path / "report" / DIFF_CSV).exists()
    assert not (tmp_path / "report" / SCATTER_PNG).exists()


def test_a_run_without_config_is_named_and_left_out_of_the_table(tmp_path):
    old = write_run(tmp_path / "old", results(["a"], 0.7, 0.2), config=None)
    new = write_run(tmp_path / "new", results(["a"], 0.6, 0.1))
    page = write_report([old, new], tmp_path / "report").read_text(encoding="utf-8")
    assert "Left out, without a <code>config.yaml</code>: old." in page and "no settings to compare" in page


def test_sweep_methods_are_points_with_the_group_tables_interval_and_runs_points_without(tmp_path):
    finals = {0: 0.5, 1: 0.7, 2: 0.6}
    run_dirs = [write_run(tmp_path / f"seed{seed}", results(["a"], final, 0.1 * (seed + 1))) for seed, final in finals.items()]
    run_dirs.append(write_run(tmp_path / "alone", results(["a"], 0.4, 0.3)))
    run_dirs.append(write_run(tmp_path / "unfinished", results(["a"], 0.2, 0.0, complete=False)))
    runs = load_runs(run_dirs)
    cells = {seed: SweepCell("er", seed, 0, run_dirs[seed]) for seed in finals}
    groups = group_table([(cell, runs[index].results) for index, cell in cells.items()])
    found, axis = scatter_points(runs, cells, groups, ["er (3 cells)", "alone", "unfinished"], [0, 0, 0, 1, 2])
    assert axis == "seeds" and [point.label for point in found] == ["er (3 cells)", "alone"], "an unfinished run is no point"
    final = next(row for row in groups.rows if row["metric"] == "final avg acc")
    assert found[0].accuracy.mean == pytest.approx(60.0) == final["mean_over_seeds"]
    assert found[0].accuracy.half_width == pytest.approx(final["ci95_over_seeds"]) and found[0].accuracy.n == 3
    assert found[0].forgetting.mean == pytest.approx(20.0) and found[0].forgetting.half_width > 0
    assert found[1].accuracy.mean == pytest.approx(40.0) and found[1].accuracy.half_width is None
