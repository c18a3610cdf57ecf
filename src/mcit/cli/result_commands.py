"""`mcit report`, `mcit metrics` and `mcit ls`: read results and what is registered."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from mcit.cli.common import app, console, say, user_errors
from mcit.errors import UserError


@app.command()
@user_errors
def report(
    run_dirs: Annotated[list[Path], typer.Argument(metavar="RUN_DIR", help="Run directories of `mcit run` (complete or not).")],
    out: Annotated[Path, typer.Option(help="Directory to write index.html, its figures and the CSV/LaTeX/JSON exports to.")],
) -> None:
    """Write an HTML report comparing runs: accuracy matrices and curves, metrics, costs; CSV, LaTeX and JSON exports."""
    from mcit.report import write_report

    page = write_report(run_dirs, out)
    say(f"report: {page}", soft_wrap=True)


@app.command("metrics")
@user_errors
def matrix_metrics(
    matrix: Annotated[Path, typer.Argument(metavar="MATRIX.csv|results.json", help="A CSV table (first row the task names; each next row the scores after one task, first cell its name, empty where not evaluated; an optional 'zero-shot' row), or a run's results.json or directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object keyed by the metric names of `mcit ls`: value, unit, convention, and why unavailable.")] = False,
) -> None:
    """The field's metrics of any accuracy matrix (a paper's table, another toolkit's logs), each with its convention."""
    import json

    from mcit.matrix_files import POINTS, read_matrix_file, summary_json
    from mcit.metrics import summarize

    found = read_matrix_file(matrix)
    summary = summarize(found.matrix, found.zero_shot, found.test_sizes)
    if as_json:
        typer.echo(json.dumps(summary_json(summary, found.unit), indent=2))
        return
    unit = "points" if found.unit == POINTS else "fractions"
    title = f"{escape(str(found.path))}: {len(found.tasks)} tasks, {found.not_evaluated} cells not evaluated; metrics in {unit}, like the scores"
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("convention (or why unavailable)")
    for name, value in summary.values.items():
        if value is None:
            table.add_row(name, "-", f"unavailable: {summary.unavailable.get(name, 'undefined')}")
        else:
            table.add_row(name, f"{value:.2f}" if found.unit == POINTS else f"{value:.4f}", summary.conventions[name])
    console.print(table)


@app.command("ls")
@user_errors
def list_registered(
    what: Annotated[Optional[str], typer.Argument(help="'benchmarks': the published streams in detail, with the files each expects.")] = None,
) -> None:
    """List scenarios, methods, selectors, benchmarks, published streams, embedded tasks, scorers and metrics."""
    from mcit.benchmarks import BENCHMARKS
    from mcit.benchmarks.published import published_streams
    from mcit.data.synthetic.tasks import TASKS
    from mcit.evaluation.scorers import SCORERS
    from mcit.metrics import METRICS
    from mcit.scenarios import SCENARIOS
    from mcit.selection import SELECTORS
    from mcit.strategies import STRATEGIES

    if what == "benchmarks":
        for name in published_streams():
            _print_stream(name)
        return
    if what is not None:
        raise UserError(f"mcit ls takes no argument or 'benchmarks', got {what!r}")
    for title, registry in (
        ("scenarios", SCENARIOS), ("methods", STRATEGIES), ("selectors (pool scenario)", SELECTORS), ("benchmarks", BENCHMARKS),
        ("embedded tasks", TASKS), ("scorers", SCORERS), ("metrics", METRICS),
    ):
        table = Table(title=title, title_justify="left")
        table.add_column("name")
        table.add_column("description")
        for name in registry:
            table.add_row(name, registry.help(name))
        console.print(table)
    table = Table(title="published streams (mcit run NAME benchmark.root=DATA; details: mcit ls benchmarks)", title_justify="left")
    table.add_column("name")
    table.add_column("tasks, in order")
    for name in published_streams():
        table.add_row(name, " -> ".join(_stream_yaml(name)["tasks"]))
    console.print(table)


def _stream_yaml(name: str) -> dict:
    import yaml

    from mcit.benchmarks.published import published_path

    data = yaml.safe_load(published_path(name).read_text(encoding="utf-8"))
    tasks = data["benchmark"]["tasks"] + list(data["benchmark"].get("eval_only") or [])
    return {"stream": data["stream"], "tasks": [t["name"] for t in data["benchmark"]["tasks"]], "files": tasks}


def _print_stream(name: str) -> None:
    info = _stream_yaml(name)
    stream = info["stream"]
    console.print(f"[bold]{escape(name)}[/]: {escape(stream['title'])}", highlight=False)
    say(f"  paper: {stream.get('paper', '')}\n  data: {stream.get('data', '')}", soft_wrap=True)
    table = Table(title_justify="left", show_edge=False)
    for column in ("task", "train", "eval", "images", "scorer"):
        table.add_column(column)
    for task in info["files"]:
        table.add_row(task["name"], task.get("train") or "-", task.get("eval") or "-", task.get("images") or "(root, else file's folder)", task.get("scorer", "exact_norm"))
    console.print(table)
