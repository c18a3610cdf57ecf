"""``mcit report`` on two real tiny runs (seqft, er): page, figures and exports agree with results.json."""

from __future__ import annotations

import csv
import os
import json
import shutil

import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import one_line_error, tiny_overrides
from mcit.cli import app
from mcit.config import load_config
from mcit.report.tables import CSV_DECIMALS, METRICS
from mcit.runner import Runner


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """seqft (with the base stage) and er started from seqft's base model, without the standard-form model.

    The tiny runs score 0 everywhere; tests/unit/test_report_tables.py checks distinct values.
    """
    root = tmp_path_factory.mktemp("runs")
    Runner(load_config(None, tiny_overrides(threads=1)), root / "seqft").run()
    shared = {"model.name": str(root / "seqft" / "base_model"), "benchmark.base": "null", "save_models": "false"}
    Runner(load_config(None, tiny_overrides(method="[er]", threads=1, **shared)), root / "er").run()
    return root


def results_of(run_dir) -> dict:
    return json.loads((run_dir / "results.json").read_text(encoding="utf-8"))


def read_csv(path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def report(*args) -> object:
    return CliRunner().invoke(app, ["report", *map(str, args)])


def points_or_empty(value) -> object:
    return "" if value is None else pytest.approx(100 * value)


def number(text: str) -> object:
    return "" if text == "" else float(text)


def test_report_of_two_runs(runs, tmp_path):
    out = tmp_path / "report"
    result = report(runs / "seqft", runs / "er", "--out", out)
    assert result.exit_code == 0, result.output
    assert str(out / "index.html") in result.output.replace("\n", "")
    page = (out / "index.html").read_text(encoding="utf-8")
    comparison = {row["run"]: row for row in read_csv(out / "comparison.csv")}
    cost = {row["run"]: row for row in read_csv(out / "cost.csv")}
    matrices = {entry["run"]: entry for entry in json.loads((out / "matrices.json").read_text())["runs"]}
    assert list(comparison) == list(cost) == list(matrices) == ["seqft", "er"]
    for name in ("seqft", "er"):
        results = results_of(runs / name)
        row = comparison[name]
        assert row["methods"] == name and row["steps"] == "2/2"
        for key in METRICS:
            assert number(row[key]) == points_or_empty(results["metrics"].get(key)), key
        assert number(row["language_forgetting:arithmetic"]) == points_or_empty(results["language"]["arithmetic"]["forgetting"])
        # Costs: seconds summed over the rows (+ zero-shot), trainable parameters over the parts.
        train = sum(r["train_seconds"] for r in results["rows"])
        evals = sum(r["eval_seconds"] for r in results["rows"]) + results["zero_shot_eval_seconds"]
        half_a_last_digit = 0.5 * 10**-CSV_DECIMALS  # the CSV rounds to CSV_DECIMALS decimals
        assert float(cost[name]["train_seconds"]) == pytest.approx(train, abs=half_a_last_digit)
        assert float(cost[name]["eval_seconds"]) == pytest.approx(evals, abs=half_a_last_digit)
        assert int(cost[name]["trainable_parameters"]) == sum(p["trainable"] for p in results["parameters"]) > 0
        checkpoint = runs / name / "checkpoints" / "task-002"
        whole = sum(p.stat().st_size for p in checkpoint.rglob("*") if p.is_file())
        assert cost[name]["checkpoint"] == "task-002" and int(cost[name]["checkpoint_bytes"]) == whole
        assert 0 < int(cost[name]["strategy_state_bytes"]) < whole
        # The matrix in points: the zero-shot row, then one row per task; eval-only columns last.
        columns = results["tasks"] + results["eval_only"]
        expected = [[100 * results["zero_shot"][c] for c in columns]] + [[100 * v for v in r] for r in results["matrix"]]
        assert matrices[name]["rows"] == ["zero-shot", "color", "count"] and matrices[name]["columns"] == columns
        assert matrices[name]["matrix"] == [pytest.approx(r) for r in expected]
        for figure in (f"{name}-matrix.png", f"{name}-curves.png"):
            with Image.open(out / figure) as image:
                image.load()
                assert image.format == "PNG" and 300 <= image.width <= 3000 and 200 <= image.height <= 2000, image.size
            assert f'src="{figure}"' in page
        assert f'<h3>{name}</h3>' in page and results["environment"]["python"] in page
    assert int(cost["er"]["strategy_state_bytes"]) > int(cost["seqft"]["strategy_state_bytes"]), "er keeps a buffer"
    assert int(cost["er"]["checkpoint_bytes"]) < int(cost["seqft"]["checkpoint_bytes"]), "er saved no standard-form model"
    tex = (out / "comparison.tex").read_text()
    assert tex.startswith("\\begin{tabular}") and "arithmetic* forgetting" in tex and tex.count(r" \\") == 3
    assert "incomplete" not in page


def test_an_incomplete_run_is_marked(runs, tmp_path):
    partial = tmp_path / "er-partial"
    shutil.copytree(runs / "er", partial)
    results = results_of(partial)  # as results.json reads after the first task of two
    results.update(rows=results["rows"][:1], matrix=results["matrix"][:1], complete=False)
    (partial / "results.json").write_text(json.dumps(results), encoding="utf-8")
    result = report(runs / "seqft", partial, "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert page.count("(incomplete: 1 of 2 steps)") == 2, "in the list of runs and the run's heading"
    assert [row["steps"] for row in read_csv(tmp_path / "report" / "comparison.csv")] == ["2/2", "1/2"]
    matrix = json.loads((tmp_path / "report" / "matrices.json").read_text())["runs"][1]
    assert matrix["complete"] is False and matrix["rows"] == ["zero-shot", "color"]


def test_a_directory_without_results_is_one_line_and_writes_nothing(runs, tmp_path):
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    line = one_line_error(report(runs / "seqft", empty, "--out", tmp_path / "report"))
    assert "not-a-run" in line and "results.json" in line
    assert not (tmp_path / "report").exists()


CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-logging=stderr", "--v=0", "--window-size=1280,2000",
]


def open_in_chromium(page, screenshot, profile) -> list[str]:
    """Open ``page`` in headless Chromium, write a screenshot; return the page's console messages."""
    import subprocess

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("MCIT_REQUIRE_BROWSER"):
            pytest.fail("MCIT_REQUIRE_BROWSER is set but no chromium is installed (.ci/run installs Debian's chromium)")
        pytest.skip("no chromium on this machine (apt install chromium)")
    done = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={screenshot}", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


def test_a_real_browser_renders_the_report_without_console_messages(runs, tmp_path):
    out = tmp_path / "report"
    assert report(runs / "seqft", runs / "er", "--out", out).exit_code == 0
    # The control: a page with a script error is caught, so a clean result below means something.
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>notDefined();</script></body></html>", encoding="utf-8")
    assert any("notDefined" in line for line in open_in_chromium(broken, tmp_path / "broken.png", tmp_path / "p1"))

    messages = open_in_chromium(out / "index.html", tmp_path / "shot.png", tmp_path / "p2")
    assert messages == []
    with Image.open(tmp_path / "shot.png") as shot:
        assert shot.size == (1280, 2000)
        colours = shot.convert("L").getextrema()
    assert colours[1] - colours[0] > 100, "the screenshot shows content, not a blank page"
