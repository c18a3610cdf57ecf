"""Matrices from files (mcit.matrix_files) and ``mcit metrics`` on them, on hand-written tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import one_line_error
from mcit.cli import app
from mcit.errors import UserError
from mcit.matrix_files import read_matrix_file

# A paper's lower triangle in points (the one of tests/unit/test_metrics.py, LOWER), with the
# ways such a table is written: a corner cell, blank cells, a dash, rows padded or cut short.
LOWER_CSV = """after,t1,t2,t3,t4
t1,80.0,,,
t2,70,60
t3,65,50,90,-
t4,60,65,85,40
"""
LOWER = [[80.0, None, None, None], [70.0, 60.0, None, None], [65.0, 50.0, 90.0, None], [60.0, 65.0, 85.0, 40.0]]
# Its metrics by hand: MFN (60+65+85+40)/4; MFT (80+60+90+40)/4; forgetting from own training
# ((80-60) + (60-65) + (90-85)) / 3; CoIN++ (20 + 0 + 5) / 3; BWT ((60-80) + (65-60) + (85-90)) / 3.
LOWER_POINTS = {
    "final_average_accuracy": 62.5, "mean_finetune_accuracy": 67.5, "average_forgetting": 20 / 3,
    "average_forgetting_coinpp": 25 / 3, "backward_transfer": -20 / 3,
}


def write(tmp_path: Path, text: str, name: str = "matrix.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path




# -- the CSV parser ------------------------------------------------------------------------------------


def test_a_lower_triangle_in_points_reads_with_its_blanks(tmp_path):
    found = read_matrix_file(write(tmp_path, LOWER_CSV))
    assert found.tasks == ["t1", "t2", "t3", "t4"]
    assert found.matrix == LOWER
    assert found.unit == "points" and found.not_evaluated == 6
    assert found.zero_shot is None and found.test_sizes is None


def test_fractions_without_a_corner_cell_and_a_zero_shot_row(tmp_path):
    text = "\ufeffa,b\nzero-shot,0.1,0.25\na,0.8,0.5\nb,0.6,0.9\n"  # with a spreadsheet's byte-order mark
    found = read_matrix_file(write(tmp_path, text))
    assert found.tasks == ["a", "b"] and found.matrix == [[0.8, 0.5], [0.6, 0.9]]
    assert found.zero_shot == [0.1, 0.25] and found.unit == "fraction"


def test_a_percent_sign_means_points_even_when_every_score_is_small(tmp_path):
    found = read_matrix_file(write(tmp_path, ",a,b\na,1%,\nb,0.5%,0.75%\n"))
    assert found.unit == "points" and found.matrix == [[1.0, None], [0.5, 0.75]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "matrix.csv: empty; the first row names the tasks"),
        ("a,b\n", "matrix.csv: no rows of scores after the header"),
        ("x,a,b,c\na,1\nb,2,3\n", "matrix.csv, line 1: the header names 4 columns for 2 rows of scores"),
        ("x,a,a\na,1\na,2,3\n", "matrix.csv, line 1: task names must be non-empty and distinct, got 'a'"),
        ("x,a,b\na,0.5\nb,0.4,high\n", "matrix.csv, line 3, column 3: 'high' is not a score"),
        ("x,a,b\na,0.5\n\nb,0.4,120\n", "matrix.csv, line 4, column 3: '120' is out of range: scores are fractions (0-1) or points (0-100)"),
        ("x,a,b\na,-0.1\nb,0.4,0.5\n", "matrix.csv, line 2, column 2: '-0.1' is out of range"),
        ("x,a,b\na,nan\nb,0.4,0.5\n", "matrix.csv, line 2, column 2: 'nan' is out of range"),
        ("x,a,b\na,0.5,0.2,0.3\nb,0.4,0.5\n", "matrix.csv, line 2: 3 scores, but the header names 2 tasks"),
        ("x,a,b\nb,0.5,0.2\na,0.4,0.5\n", "matrix.csv, line 2: row 'b' is out of order; rows follow the header's task order"),
        ("x,a,b\nzero-shot,0,0\na,1\nzero_shot,0,0\nb,1,1\n", "matrix.csv, line 4: a second zero-shot row"),
        ('x,a,b\na,"0.5\n', "matrix.csv, line 2: unexpected end of data"),
    ],
)
def test_bad_csv_is_one_user_error_naming_the_file_and_line(tmp_path, text, message):
    with pytest.raises(UserError) as error:
        read_matrix_file(write(tmp_path, text))
    text = str(error.value)
    assert len(text.splitlines()) == 1
    assert text.startswith(f"{tmp_path}/{message}"), text  # the path, the line and the problem


def test_a_file_that_is_not_text_or_not_there(tmp_path):
    binary = tmp_path / "matrix.csv"
    binary.write_bytes(b"\xff\xfe\x00a,b")
    with pytest.raises(UserError, match=r"matrix\.csv: not a UTF-8 text file"):
        read_matrix_file(binary)
    with pytest.raises(UserError, match=r"missing\.csv: no such file"):
        read_matrix_file(tmp_path / "missing.csv")


# -- a run's results.json ----------------------------------------------------------------------------------


def seen_only_results() -> dict:
    """A 2-of-3-tasks run that evaluated only the tasks seen so far (null: not evaluated)."""
    return {
        "scenario": "stream", "tasks": ["a", "b", "c"], "eval_only": ["lang"],
        "zero_shot": {"a": 0.1, "b": 0.2, "c": 0.0, "lang": 0.5}, "test_sizes": {"a": 1, "b": 3, "c": 2, "lang": 4},
        "rows": [
            {"after": "a", "scores": {"a": 0.8, "b": None, "c": None, "lang": 0.4}},
            {"after": "b", "scores": {"a": 0.6, "b": 0.9, "c": None, "lang": 0.3}},
        ],
    }


def test_results_json_gives_the_square_of_the_tasks_done_with_zero_shot_and_sizes(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write(run, json.dumps(seen_only_results()), "results.json")
    for path in (run / "results.json", run):  # the file or its run directory
        found = read_matrix_file(path)
        assert found.tasks == ["a", "b"] and found.matrix == [[0.8, None], [0.6, 0.9]]
        assert found.zero_shot == [0.1, 0.2] and found.test_sizes == [1, 3] and found.unit == "fraction"


@pytest.mark.parametrize(
    ("results", "message"),
    [
        ({"scenario": "pool", "skills": ["s"], "rows": []}, "a pool run scores skills, not a task stream"),
        ({"scenario": "stream", "tasks": ["a"], "rows": []}, "no task is done yet, so there is no matrix"),
        ({"hello": 1}, "not the results of a stream run"),
        ({"scenario": "stream", "tasks": ["a"], "rows": [[0.5]]}, "not the results of a stream run"),
        ({"scenario": "stream", "tasks": ["a"], "rows": [{"after": "a", "scores": {"a": "high"}}]}, "the score of 'a' after 'a' is 'high', not a score"),
    ],
)
def test_results_json_that_holds_no_stream_matrix_is_a_user_error(tmp_path, results, message):
    with pytest.raises(UserError, match=message):
        read_matrix_file(write(tmp_path, json.dumps(results), "results.json"))


# -- mcit metrics -------------------------------------------------------------------------------------------


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


def test_mcit_metrics_json_is_keyed_by_the_metric_names_of_mcit_ls(cli, tmp_path):
    from mcit.metrics import CONVENTIONS, METRICS

    result = cli.invoke(app, ["metrics", str(write(tmp_path, LOWER_CSV)), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert list(out) == METRICS.names()
    for name, expected in LOWER_POINTS.items():
        assert out[name]["value"] == pytest.approx(expected), name
        assert out[name]["unit"] == "points" and out[name]["unavailable"] is None
    assert all(out[name]["convention"] == CONVENTIONS[name] for name in out)
    assert out["forward_transfer"]["value"] is None
    assert out["forward_transfer"]["unavailable"].startswith("needs the zero-shot scores")
    assert out["final_weighted_accuracy"]["unavailable"] == "needs each task's test-set size"


def test_mcit_metrics_table_names_each_convention_and_why_a_metric_is_unavailable(cli, tmp_path):
    with_zero_shot = LOWER_CSV.replace("t1,80.0", "zero-shot,5,10,20,30\nt1,80.0")
    result = cli.invoke(app, ["metrics", str(write(tmp_path, with_zero_shot))], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "4 tasks, 6 cells not evaluated; metrics in points, like the scores" in result.stdout
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 3}
    assert "6.67" in lines["average_forgetting"] and "from the task's own training on" in lines["average_forgetting"]
    assert "8.33" in lines["average_forgetting_coinpp"] and "CoIN++" in lines["average_forgetting_coinpp"]
    assert "62.50" in lines["final_average_accuracy"] and "MFN" in lines["final_average_accuracy"]
    # With a zero-shot row FWT still needs the cells the lower triangle leaves out, and says so.
    assert "unavailable: needs each task's score before its own training" in lines["forward_transfer"]


def test_mcit_metrics_on_a_run_reports_fractions(cli, tmp_path):
    path = write(tmp_path, json.dumps(seen_only_results()), "results.json")
    out = json.loads(cli.invoke(app, ["metrics", str(path), "--json"]).stdout)
    # FAA weighs the final row by test sizes 1 and 3: (0.6 + 3 * 0.9) / 4.
    assert out["final_weighted_accuracy"]["value"] == pytest.approx((0.6 + 2.7) / 4)
    assert out["average_forgetting"]["value"] == pytest.approx(0.2) and out["average_forgetting"]["unit"] == "fraction"
    assert out["forward_transfer"]["unavailable"].endswith("(first: after task 1, on task 2)")


def test_mcit_metrics_bad_input_is_one_line_naming_file_and_line(cli, tmp_path):
    line = one_line_error(cli.invoke(app, ["metrics", str(write(tmp_path, "x,a,b\na,0.5\nb,0.4,oops\n"))]))
    assert "matrix.csv, line 3, column 3: 'oops' is not a score" in line
    assert "no such file" in one_line_error(cli.invoke(app, ["metrics", str(tmp_path / "nothing.csv")]))
