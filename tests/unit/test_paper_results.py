"""Paper-compatible scores beside mcit's: per task, in results.json, the terminal and the report."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from mcit.config.benchmark import FileTaskConfig
from mcit.data.sample import Sample, Task
from mcit.evaluation.evaluate import TaskEvaluation, score_answers
from mcit.evaluation.paper import paper_scores, paper_section, update_paper_matrix
from mcit.report import paper_matrix_table, scores_table
from mcit.report.html import RunFigures, _run_section
from mcit.report.runs import Run, paper_view
from mcit.report.tables import matrices


def _task(name: str, answers: list[str], paper_scorer: str | None, scorer: str = "exact_norm") -> Task:
    samples = [Sample(id=f"{name}{i}", prompt="q", answer=answer) for i, answer in enumerate(answers)]
    return Task(name, [], samples, scorer=scorer, paper_scorer=paper_scorer)


def _evaluate(task: Task, predictions: list[str]) -> TaskEvaluation:
    paper = None if task.paper_scorer is None else score_answers(task.paper_scorer, task, predictions)
    return TaskEvaluation(task, predictions, score_answers(task.scorer, task, predictions), paper)


def test_one_set_of_answers_gets_both_scores_and_the_record_keeps_both_per_sample():
    # CoIN's VQAv2: mcit's normalised match counts "Two" for "2"; CoIN's eval_vqav2.py does not.
    vqav2 = _evaluate(_task("vqav2", ["2", "yes"], "exact_nocase"), ["Two", "YES"])
    assert vqav2.score == 1.0 and vqav2.paper_score == 0.5
    record = vqav2.record()
    assert (record["scorer"], record["paper_scorer"], record["paper_score"]) == ("exact_norm", "exact_nocase", 0.5)
    assert [(s["score"], s["paper_score"]) for s in record["samples"]] == [(1.0, 0.0), (1.0, 1.0)]


def test_a_task_without_paper_scorer_keeps_its_record_and_reports_none():
    plain = _evaluate(_task("count", ["3"], None), ["3"])
    assert plain.paper_score is None and "paper_scorer" not in plain.record()
    assert paper_scores([plain]) is None  # a run without paper scorers reports nothing extra
    vqav2 = _evaluate(_task("vqav2", ["2"], "exact_nocase"), ["2"])
    assert paper_scores([vqav2, plain]) == {"vqav2": 1.0, "count": None}


def test_paper_matrix_follows_the_rows_in_the_column_order():
    columns = [_task("vqav2", ["2"], "exact_nocase"), _task("count", ["3"], None)]
    results = {"paper": paper_section(columns, {"vqav2": 0.25, "count": None}), "rows": [
        {"after": "vqav2", "paper_scores": {"vqav2": 0.5, "count": None}},
        {"after": "count", "paper_scores": {"count": None, "vqav2": 0.75}},
    ]}  # fmt: skip
    update_paper_matrix(results)
    assert results["paper"]["scorers"] == {"vqav2": "exact_nocase", "count": None}
    assert results["paper"]["matrix"] == [[0.5, None], [0.75, None]]
    without = {"rows": [{"after": "a", "scores": {"a": 1.0}}]}
    update_paper_matrix(without)
    assert "paper" not in without


def _results() -> dict:
    results = {
        "scenario": "stream", "tasks": ["vqav2", "count"], "eval_only": [],
        "zero_shot": {"vqav2": 0.5, "count": 0.0}, "rows": [
            {"after": "vqav2", "scores": {"vqav2": 1.0, "count": 0.0}, "paper_scores": {"vqav2": 0.6, "count": None}},
        ],
        "paper": paper_section([_task("vqav2", ["2"], "exact_nocase"), _task("count", ["3"], None)], {"vqav2": 0.25, "count": None}),
    }  # fmt: skip
    update_paper_matrix(results)
    return results


def _printed(table) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text()


def test_terminal_prints_the_paper_matrix_with_each_scorer_and_dashes_where_none():
    text = _printed(paper_matrix_table(_results()))
    assert "exact_nocase" in text and "Paper-compatible" in text
    zero_shot = next(line for line in text.splitlines() if "zero-shot" in line)
    after = next(line for line in text.splitlines() if line.strip("│ ").startswith("vqav2") and "60.0" in line)
    assert "25.0" in zero_shot and "-" in after.split("60.0")[1]
    assert paper_matrix_table({"rows": []}) is None


def test_mcit_eval_table_adds_a_paper_row_only_when_some_set_has_a_paper_scorer():
    result = {"model": "/m/tiny", "columns": ["vqav2", "count"], "scores": {"vqav2": 1.0, "count": 0.5}}
    assert "paper" not in _printed(scores_table(result))
    text = _printed(scores_table({**result, "paper_scores": {"vqav2": 0.25, "count": None}}))
    assert "tiny (paper's script)" in text and "25.0" in text


def test_report_shows_and_exports_the_paper_matrix(tmp_path: Path):
    run = Run("r", "r", tmp_path, _results())
    view = paper_view(run.results)
    assert view.rows == ["zero-shot", "vqav2"] and view.labels == ["vqav2 (exact_nocase)", "count (-)"]
    assert view.values == [[25.0, None], [60.0, None]]
    section = _run_section(run, RunFigures("m.png", "c.png"))
    assert "Paper-compatible matrix" in section and "vqav2 (exact_nocase)" in section and "60.0" in section
    exported = matrices([run])["runs"][0]
    assert exported["paper_matrix"] == [[25.0, None], [60.0, None]] and exported["paper_columns"] == ["vqav2", "count"]
    plain = Run("p", "p", tmp_path, {k: v for k, v in _results().items() if k != "paper"})
    assert "Paper-compatible" not in _run_section(plain, RunFigures("m.png", "c.png"))
    assert "paper_matrix" not in matrices([plain])["runs"][0]


def test_config_names_a_known_paper_scorer():
    assert FileTaskConfig(name="t", paper_scorer="coin_grounding").paper_scorer == "coin_grounding"
    with pytest.raises(ValueError, match="coin_grounding"):
        FileTaskConfig(name="t", paper_scorer="coin_grounds")
