"""``mcit report`` tables, sizes, exports and page on hand-written results (no training)."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from PIL import Image

from mcit.errors import UserError
from mcit.report import write_report
from mcit.report.runs import load_runs, matrix_view, strategy_state_bytes
from mcit.report.tables import comparison_table, cost_table, latex_escape, latex_tabular
from mcit.store import RunStore


def stream_results(**extra) -> dict:
    results = {
        "scenario": "stream", "tasks": ["a", "b"], "eval_only": ["lang"], "methods": ["er", "ewc"], "complete": True,
        "zero_shot": {"a": 0.1, "b": 0.2, "lang": 0.5},
        "zero_shot_eval_seconds": 1.5,
        "rows": [
            {"after": "a", "scores": {"a": 0.8, "b": 0.25, "lang": 0.4}, "train_seconds": 10.0, "eval_seconds": 2.0},
            {"after": "b", "scores": {"a": 0.6, "b": 0.9, "lang": None}, "train_seconds": 12.5, "eval_seconds": 2.5},
        ],
        "metrics": {
            "final_average_accuracy": 0.75, "mean_finetune_accuracy": 0.85, "mean_average_accuracy": 0.7625,
            "average_forgetting": 0.2, "backward_transfer": -0.2, "forward_transfer": None,
        },
        "language": {"lang": {"zero_shot": 0.5, "current": None, "forgetting": math.nan}},
        "parameters": [{"part": "vision", "total": 100, "trainable": 0}, {"part": "projector", "total": 40, "trainable": 40},
                       {"part": "language_model", "total": 500, "trainable": 12}],
        "environment": {"python": "3.11.9", "device": "cpu", "threads": 2, "packages": {"torch": "2.13.0"}},
    }
    results.update(extra)
    return results


def pool_results(rate) -> dict:
    return {
        "scenario": "pool", "datasets": ["d1", "d2", "d3"], "skills": ["s1", "s2"], "methods": ["seqft"], "complete": False,
        "zero_shot": {"s1": 0.0, "s2": 0.5},
        "rows": [
            {"after": "d1", "scores": {"s1": 0.5, "s2": 0.4}, "train_seconds": 3.0, "eval_seconds": 1.0, "selection_seconds": 0.5},
            {"after": "d2", "scores": {"s1": 0.25, "s2": 0.6}, "train_seconds": 4.0, "eval_seconds": 1.0, "selection_seconds": 0.25},
        ],
        "metrics": {"final_average_accuracy": 0.425, "forgetting_rate": rate},
    }


def write_run(directory, results):
    directory.mkdir(parents=True)
    (directory / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return directory


def test_comparison_rows_in_points_with_dashes_for_undefined(tmp_path):
    runs = load_runs([write_run(tmp_path / "er", stream_results()), write_run(tmp_path / "pool", pool_results(12.5))])
    table = comparison_table(runs)
    keys = [c.key for c in table.columns]
    assert keys == ["run", "methods", "steps", "final_average_accuracy", "mean_finetune_accuracy", "mean_average_accuracy",
                    "column_average_accuracy", "average_forgetting", "average_forgetting_coinpp", "backward_transfer",
                    "forward_transfer", "forgetting_rate", "language_forgetting:lang"]
    titles = {c.key: c.title for c in table.columns}  # the forgetting columns name their convention
    assert titles["average_forgetting"] == "avg forgetting (from own training)"
    assert titles["average_forgetting_coinpp"] == "avg forgetting (CoIN++)"
    stream, pool = table.rows
    assert stream["methods"] == "er+ewc" and stream["steps"] == "2/2"
    assert stream["final_average_accuracy"] == pytest.approx(75.0) and stream["backward_transfer"] == pytest.approx(-20.0)
    assert stream["forward_transfer"] is None and stream["language_forgetting:lang"] is None
    assert pool["forgetting_rate"] == 12.5, "LAMP's rate is already in percent"
    assert pool["final_average_accuracy"] == pytest.approx(42.5) and pool["backward_transfer"] is None
    cells = table.cells()
    # This run's results predate the column-wise Avg and CoIN++'s forgetting: "-", not a guess.
    assert cells[0][3:] == ["75.0", "85.0", "76.2", "-", "20.0", "-", "-20.0", "-", "-", "-"]
    assert cells[1][3:] == ["42.5", "-", "-", "-", "-", "-", "-", "-", "12.5", "-"]
    assert runs[1].note == "(incomplete: 2 of 3 steps)" and runs[0].note == ""


def test_comparison_has_the_nlu_nlg_and_vl_delta_columns_in_points(tmp_path):
    deltas = {
        "linguistic_forgetting": {
            "nlu": {"tasks": ["lang"], "zero_shot": 0.5, "current": 0.25, "forgetting": 0.25, "by_step": [0.1, 0.25]},
        },
        "vision_language_forgetting": {"tasks": ["a", "b"], "forgetting": 0.2, "by_step": [math.nan, 0.2]},
    }
    one_step = {"vision_language_forgetting": {"tasks": ["a"], "forgetting": math.nan, "by_step": [math.nan]}}
    runs = load_runs([write_run(tmp_path / "new", stream_results(**deltas)), write_run(tmp_path / "old", stream_results()),
                      write_run(tmp_path / "short", stream_results(**one_step))])
    table = comparison_table(runs)
    keys = [c.key for c in table.columns]
    # No run has an NLG group, so there is no NLG column; the Deltas come before the per-task forgetting.
    assert keys[-3:] == ["linguistic_forgetting:nlu", "vision_language_forgetting", "language_forgetting:lang"]
    assert [c.title for c in table.columns][-3:-1] == ["NLU Delta", "VL Delta"]
    new, old, short = table.rows
    assert new["linguistic_forgetting:nlu"] == pytest.approx(25.0) and new["vision_language_forgetting"] == pytest.approx(20.0)
    assert old["linguistic_forgetting:nlu"] is None and old["vision_language_forgetting"] is None
    assert short["vision_language_forgetting"] is None, "a one-task run has no VL Delta"
    assert [cells[-3:-1] for cells in table.cells()] == [["25.0", "20.0"], ["-", "-"], ["-", "-"]]
    assert "NLU Delta & VL Delta" in latex_tabular(table)


def test_forgetting_rate_as_a_dict_shows_overall_and_no_column_without_it(tmp_path):
    runs = load_runs([write_run(tmp_path / "p", pool_results({"overall": 7.25, "s1": 1.0}))])
    assert comparison_table(runs).rows[0]["forgetting_rate"] == 7.25
    plain = load_runs([write_run(tmp_path / "s", stream_results(language={}))])
    assert "forgetting_rate" not in [c.key for c in comparison_table(plain).columns]


def test_matrix_view_rows_and_columns():
    view = matrix_view(stream_results())
    assert view.labels == ["a", "b", "lang*"] and view.rows == ["zero-shot", "a", "b"]
    assert view.values[2] == [pytest.approx(60.0), pytest.approx(90.0), None]
    pool = matrix_view(pool_results(1.0))
    assert pool.labels == ["s1", "s2"] and pool.rows == ["zero-shot", "d1", "d2"] and pool.values[2] == [25.0, 60.0]


def test_cost_sums_seconds_parameters_and_the_strategy_part_of_the_checkpoint(tmp_path):
    run_dir = write_run(tmp_path / "er", stream_results())
    store = RunStore(run_dir)
    strategy = {"buffer": [{"task": "a", "id": "x1"}], "fisher": torch.zeros(3, 4), "means": [torch.ones(5, dtype=torch.float64)]}
    state = {"model": {"w": torch.zeros(100)}, "strategy": strategy, "scenario": {}}
    store.save_checkpoint("task-001", {"model": {"w": torch.zeros(1)}, "strategy": {}, "scenario": {}})
    newest = store.save_checkpoint("task-002", state, {"task": "b", "index": 1})
    row = cost_table(load_runs([run_dir])).rows[0]
    assert row["train_seconds"] == 22.5 and row["eval_seconds"] == 6.0, "eval seconds include the zero-shot evaluation"
    assert row["trainable_parameters"] == 52 and row["checkpoint"] == "task-002"
    skeleton = json.loads((newest / "tree.json").read_text())["strategy"]
    expected = 3 * 4 * 4 + 5 * 8 + len(json.dumps(skeleton, separators=(",", ":")))
    assert row["strategy_state_bytes"] == expected == strategy_state_bytes(newest)
    assert row["checkpoint_bytes"] == sum(p.stat().st_size for p in newest.iterdir())
    assert row["checkpoint_bytes"] > expected + 100 * 4, "the model's weights are in the whole directory, not the strategy part"


def test_cost_without_checkpoints_or_timings(tmp_path):
    results = stream_results(rows=[], parameters=None, complete=False)
    del results["zero_shot_eval_seconds"]
    row = cost_table(load_runs([write_run(tmp_path / "r", results)])).rows[0]
    assert row["train_seconds"] is None and row["trainable_parameters"] is None and row["checkpoint_bytes"] is None
    (tmp_path / "r" / "checkpoints" / "task-001").mkdir(parents=True)  # not what the store writes
    assert strategy_state_bytes(tmp_path / "r" / "checkpoints" / "task-001") is None


def test_latex_escapes_every_special_character():
    assert latex_escape("a_b & 50% #1 $x {y} ~ ^ \\") == (
        r"a\_b \& 50\% \#1 \$x \{y\} \textasciitilde{} \textasciicircum{} \textbackslash{}"
    )


def test_report_of_a_pool_and_a_stream_run_escapes_names(tmp_path):
    odd = write_run(tmp_path / "x<b>&_%", stream_results(methods=["er<script>"]))
    pool = write_run(tmp_path / "pool", pool_results(3.0))
    page = write_report([odd, pool, odd], tmp_path / "report")
    text = page.read_text(encoding="utf-8")
    assert "x&lt;b&gt;&amp;_%" in text and "er&lt;script&gt;" in text and "<script" not in text
    assert "(incomplete: 2 of 3 steps)" in text
    names = sorted(p.name for p in page.parent.glob("*.png") if p.name.endswith(("-curves.png", "-matrix.png")))
    assert names == ["pool-curves.png", "pool-matrix.png", "x_b___-2-curves.png", "x_b___-2-matrix.png",
                     "x_b___-curves.png", "x_b___-matrix.png"], "the same directory twice gets a second name"
    # The comparison figures (tests/unit/test_report_glance.py): tasks a, b, lang*, skills s1, s2; two complete stream runs.
    names += [f"task0{number}-overlay.png" for number in range(1, 6)] + ["accuracy-vs-forgetting.png"]
    for name in names:
        assert f'src="{name}"' in text
        with Image.open(page.parent / name) as image:
            assert image.format == "PNG" and image.width >= 300 and image.height >= 150
    with open(page.parent / "comparison.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == ["x<b>&_%", "pool", "x<b>&_%-2"]
    assert rows[1]["forgetting_rate"] == "3.0" and rows[1]["backward_transfer"] == ""
    tex = (page.parent / "comparison.tex").read_text()
    assert r"x<b>\&\_\%" in tex and tex.startswith("\\begin{tabular}{lll") and tex.rstrip().endswith("\\end{tabular}")
    assert latex_tabular(comparison_table(load_runs([pool]))).count(r" \\") == 2
    matrices = json.loads((page.parent / "matrices.json").read_text())
    assert matrices["runs"][1]["rows"] == ["zero-shot", "d1", "d2"] and matrices["runs"][1]["matrix"][1] == [50.0, 40.0]


def test_unreadable_run_directories_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="has no results.json"):
        write_report([tmp_path], tmp_path / "out")
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(UserError, match="corrupt results file"):
        write_report([tmp_path], tmp_path / "out")
    with pytest.raises(UserError, match="no such directory"):
        write_report([tmp_path / "missing"], tmp_path / "out")
    assert not (tmp_path / "out").exists(), "nothing is written before every run is read"


def test_cost_has_the_largest_steps_memory_peaks_and_the_parameters_methods_added(tmp_path):
    results = stream_results()
    # A run resumed after its first step: the parameter table, recounted at the restart, already
    # holds that step's adapter (640 + 24); the growth comes from the sizes the rows recorded.
    results["parameters"][2]["total"] += 24
    results["rows"][0].update(peak_host_mb=512.5, peak_gpu_mb=None, model_parameters_before=640, model_parameters=640 + 24)
    results["rows"][1].update(peak_host_mb=700.25, peak_gpu_mb=None, model_parameters_before=664, model_parameters=664 + 24)
    row = cost_table(load_runs([write_run(tmp_path / "olora", results)])).rows[0]
    assert row["peak_host_mb"] == 700.25 and row["peak_gpu_mb"] is None
    assert row["model_growth"] == 48  # 688 after the stream - 640 when its first step started
    assert cost_table(load_runs([write_run(tmp_path / "old", stream_results())])).rows[0]["model_growth"] is None
    older = stream_results()
    older["rows"][1]["model_parameters"] = 664  # written before rows recorded their start size
    assert cost_table(load_runs([write_run(tmp_path / "older", older)])).rows[0]["model_growth"] is None


def test_report_of_a_seen_tasks_only_run_keeps_blanks_and_lists_each_convention(tmp_path):
    import html

    from mcit import metrics

    rows = [{"after": "a", "scores": {"a": 0.8, "b": None, "lang": 0.4}, "train_seconds": 1.0, "eval_seconds": 1.0},
            {"after": "b", "scores": {"a": 0.6, "b": 0.9, "lang": 0.3}, "train_seconds": 1.0, "eval_seconds": 1.0}]
    summary = metrics.summarize([[0.8, None], [0.6, 0.9]], [0.1, 0.2], [1, 1])
    results = stream_results(rows=rows, metrics=summary.values, metric_conventions=summary.conventions,
                             metrics_unavailable=summary.unavailable)
    page = write_report([write_run(tmp_path / "seen", results)], tmp_path / "report")
    text = page.read_text(encoding="utf-8")
    for key in ("average_forgetting", "average_forgetting_coinpp", "column_average_accuracy", "forward_transfer"):
        assert html.escape(metrics.CONVENTIONS[key]) in text, key
    matrices = json.loads((page.parent / "matrices.json").read_text())
    assert matrices["runs"][0]["matrix"][1] == [80.0, None, 40.0], "not evaluated stays empty, not 0"
    row = comparison_table(load_runs([tmp_path / "seen"])).rows[0]
    assert row["forward_transfer"] is None and row["average_forgetting"] == pytest.approx(20.0)
    # column-wise Avg: a (80 + 60) / 2 = 70, b 90 -> 80
    assert row["average_forgetting_coinpp"] == pytest.approx(20.0) and row["column_average_accuracy"] == pytest.approx(80.0)
