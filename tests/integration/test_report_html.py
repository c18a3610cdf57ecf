"""``mcit report`` on two real tiny runs (seqft, er): page, figures and exports agree with results.json."""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import subprocess

import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import one_line_error, tiny_overrides
from mcit.cli import app
from mcit.config import load_config
from mcit.report.glance import SCATTER_PNG
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


@pytest.fixture(scope="module")
def lora_run(runs):
    """er with LoRA r 16 and only the projector trained, from seqft's base model: what the methods column hides."""
    changed = {"model.name": str(runs / "seqft" / "base_model"), "benchmark.base": "null", "save_models": "false",
               "model.lora": "{r: 16}", "model.trainable": "[projector]"}
    Runner(load_config(None, tiny_overrides(method="[er]", threads=1, **changed)), runs / "er-lora").run()
    return runs / "er-lora"


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


def chromium_or_skip() -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("MCIT_REQUIRE_BROWSER"):
            pytest.fail("MCIT_REQUIRE_BROWSER is set but no chromium is installed (.ci/run installs Debian's chromium)")
        pytest.skip("no chromium on this machine (apt install chromium)")
    return chromium


def open_in_chromium(page, screenshot, profile) -> list[str]:
    """Open ``page`` in headless Chromium, write a screenshot; return the page's console messages."""
    done = subprocess.run(
        [chromium_or_skip(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={screenshot}", page.as_uri()],
        check=False, capture_output=True, text=True, timeout=120,
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


# Test-only: the report itself has no scripts. Once the page and its images have loaded, this
# writes what the browser made of them into the DOM, which --dump-dom prints.
PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images, (image) => ({src: image.getAttribute("src"), width: image.naturalWidth, height: image.naturalHeight}));
  const rows = Array.from(document.querySelectorAll("table.diff tbody tr"), (tr) => ({
    key: tr.querySelector("code.key") ? tr.querySelector("code.key").textContent : null,
    cells: Array.from(tr.cells).slice(1).map((td) => td.textContent),
    unusual: Array.from(tr.cells).slice(1).flatMap((td, index) => td.classList.contains("unusual") ? [index] : []),
  }));
  const columns = Array.from(document.querySelectorAll("table.diff thead th"), (th) => th.textContent);
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({images, rows, columns, text: document.body.innerText});
  document.body.appendChild(probe);
});
</script>"""


def probe_in_chromium(page, profile) -> dict:
    """Load a copy of ``page`` (beside it, so its images resolve) with :data:`PROBE` in headless Chromium; return what it saw."""
    probe = page.with_name(f"probe-{page.name}")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", f"{PROBE}</body>"), encoding="utf-8")
    done = subprocess.run(
        [chromium_or_skip(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.DOTALL)
    assert found, done.stdout[-2000:]
    return json.loads(html.unescape(found.group(1)))


def test_a_real_browser_shows_the_comparison_figures_and_only_the_settings_that_differ(runs, lora_run, tmp_path):
    out = tmp_path / "report"
    assert report(runs / "seqft", runs / "er", lora_run, "--out", out).exit_code == 0
    # The control: an image that is not there loads with no size, so the sizes below mean something.
    control = out / "control.html"
    control.write_text('<html><body><img src="not-there.png"></body></html>', encoding="utf-8")
    assert probe_in_chromium(control, tmp_path / "p1")["images"] == [{"src": "not-there.png", "width": 0, "height": 0}]

    seen = probe_in_chromium(out / "index.html", tmp_path / "p2")
    images = {image["src"]: (image["width"], image["height"]) for image in seen["images"]}
    comparison_figures = [SCATTER_PNG, "task01-overlay.png", "task02-overlay.png", "task03-overlay.png"]  # color, count, arithmetic*
    assert set(comparison_figures) <= set(images) and "task04-overlay.png" not in images
    assert all(width > 100 and height > 100 for width, height in images.values()), images
    assert seen["columns"] == ["setting", "seqft", "er", "er-lora"]
    rows = {row["key"]: row for row in seen["rows"] if row["key"]}
    assert rows["model.lora"]["cells"] == ["null", "null", "{r: 16, alpha: 16.0, dropout: 0.0, rslora: false, target_modules: null}"]
    assert rows["model.trainable"]["cells"][2] == "[projector]" and rows["model.trainable"]["unusual"] == [2]
    assert rows["method.0.name"]["cells"] == ["seqft", "er", "er"]
    assert rows["benchmark.base"]["cells"][1:] == ["null", "null"], "er and er-lora started from seqft's base model"
    shared = {"seed", "train.lr", "benchmark.tasks", "eval.batch_size", "model.lora.r", "threads"}
    assert not shared & set(rows), "settings every run shares are not shown"
    assert "All runs share every other setting" in seen["text"]
