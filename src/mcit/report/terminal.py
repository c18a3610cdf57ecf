"""Terminal tables of a run's results (rich), the console that prints them, and the run's summary.txt."""

from __future__ import annotations

import io
import itertools
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.segment import Segments
from rich.table import Table

SUMMARY_FILE = "summary.txt"  # in the run directory, beside results.json
WIDEST = 100_000  # columns a table may take when it is printed whole


class LogConsole(Console):
    """A rich console whose output survives a log file and square brackets.

    Tables are data (task names, paths, help texts such as "[er, dgg]"): their cells are
    never read as markup. When the output is not a terminal (a file, a pipe, a batch job's
    log), a table prints whole at its natural width instead of cropped to the console's
    width (80 columns for a file), and a line of text is not broken.
    """

    def print(self, *objects: Any, **kwargs: Any) -> None:
        if any(isinstance(o, Table) for o in objects):
            kwargs.setdefault("markup", False)
        if not self.is_terminal:
            if all(isinstance(o, str) for o in objects):
                kwargs.setdefault("soft_wrap", True)
            else:
                objects = tuple(o if isinstance(o, str) else self._whole(o, kwargs.get("markup")) for o in objects)
                kwargs["crop"] = False
        super().print(*objects, **kwargs)

    def _whole(self, renderable: Any, markup: bool | None) -> Any:
        """The renderable as lines of its natural width, where that is wider than the console."""
        options = self.options.update(markup=markup)
        width = Measurement.get(self, options.update_width(WIDEST), renderable).maximum
        if width <= self.width:
            return renderable
        lines = self.render_lines(renderable, options.update_width(width), new_lines=True)
        return Segments(itertools.chain.from_iterable(lines))


def _cell(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def matrix_table(results: dict[str, Any]) -> Table:
    """Accuracy (%) after every step on every task; eval-only columns marked with *, "-" where not evaluated."""
    if results.get("scenario") == "pool":
        return _skill_table(results)
    names, extra = results["tasks"], results["eval_only"]
    table = Table(title="Accuracy matrix (%): row = after training, column = evaluated task")
    table.add_column("after")
    for name in names:
        table.add_column(name, justify="right")
    for name in extra:
        table.add_column(f"{name}*", justify="right")
    if results.get("zero_shot"):
        table.add_row("zero-shot", *[_cell(results["zero_shot"][n]) for n in names + extra])
    for row in results["rows"]:
        table.add_row(row["after"], *[_cell(row["scores"].get(n)) for n in names + extra])
    return table


def _skill_table(results: dict[str, Any]) -> Table:
    """Pool scenario: accuracy (%) per skill after every step, with the selection's size."""
    skills = results["skills"]
    table = Table(title="Skill accuracy (%): row = after the step's dataset joined and training on the selection")
    table.add_column("after")
    for column in skills + ["pool", "selected", "select s"]:
        table.add_column(column, justify="right")
    if results.get("zero_shot"):
        table.add_row("zero-shot", *[_cell(results["zero_shot"][s]) for s in skills], "", "", "")
    for row in results["rows"]:
        table.add_row(
            row["after"], *[_cell(row["scores"][s]) for s in skills],
            str(row["pool_size"]), str(row["selected"]), f"{row['selection_seconds']:.1f}",
        )
    return table


def metrics_table(results: dict[str, Any]) -> Table:
    """The stream metrics (in points) with their conventions (or why unavailable), the linguistic
    forgetting of each eval-only task and of each language kind (NLU, NLG: Delta of the harmonic
    mean), and the vision-language Delta."""
    conventions = results.get("metric_conventions") or {}
    unavailable = results.get("metrics_unavailable") or {}
    table = Table(title="Metrics (points)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("convention")
    for name, value in results.get("metrics", {}).items():
        if name.startswith("forgetting_rate"):  # LAMP's rate is already in percent
            values = value.items() if isinstance(value, dict) else [("", value)]
            for skill, rate in values:
                table.add_row(f"{name} {skill}".strip(), "-" if rate is None or rate != rate else f"{rate:.1f}")
        elif isinstance(value, (int, float)) or value is None:
            note = f"unavailable: {unavailable[name]}" if name in unavailable else conventions.get(name, "")
            table.add_row(name, _cell(value), note)
    for name, entry in results.get("language", {}).items():
        table.add_row(f"{name}* forgetting vs zero-shot", _cell(entry["forgetting"]))
    for key, group in results.get("linguistic_forgetting", {}).items():
        name = "language Delta" if key == "all" else f"{key.upper()} Delta"
        omega = "harmonic mean: the paper's headline" if group.get("omega", "harmonic") == "harmonic" else "plain mean: the paper's breakdown"
        table.add_row(f"{name} vs zero-shot ({', '.join(group['tasks'])})", _cell(group["forgetting"]), f"omega = {omega}")
    if "vision_language_forgetting" in results:
        table.add_row("VL Delta (each task vs just after it)", _cell(results["vision_language_forgetting"]["forgetting"]))
    rows = results["rows"]
    parts = {"training": sum(r["train_seconds"] for r in rows), "evaluation": sum(r["eval_seconds"] for r in rows)}
    if results.get("scenario") == "pool":  # choosing each step's data (and pruning the pool) is stream time too
        parts["selection"] = sum(r.get("selection_seconds", 0.0) + r.get("prune_seconds", 0.0) for r in rows)
    table.add_row("stream wall time (s)", f"{sum(parts.values()):.1f}")
    for part, seconds in parts.items():
        table.add_row(f"  {part} (s)", f"{seconds:.1f}")
    return table


# A task whose zero-shot score is at least this fraction of its score right after training.
NEAR_ZERO_SHOT = 0.9


def zero_shot_notes(results: dict[str, Any], ratio: float = NEAR_ZERO_SHOT) -> list[str]:
    """Stream tasks the model could already do before the stream (a leakage and sanity check).

    A task whose zero-shot score is at least ``ratio`` of its score right after its own
    training (the diagonal) teaches the model little: its evaluation set may overlap the
    model's earlier training data, or the task may be too easy to show forgetting.
    """
    zero_shot = results.get("zero_shot") or {}
    if results.get("scenario") == "pool" or not zero_shot:
        return []
    notes = []
    for row in results["rows"]:
        task = row["after"]
        trained, before = row["scores"].get(task), zero_shot.get(task)
        if trained and before is not None and before >= ratio * trained:
            notes.append(
                f"task {task!r}: zero-shot {_cell(before)} is already {_cell(before / trained)}% of its score after "
                f"training ({_cell(trained)}): check its eval set for overlap with the model's earlier data"
            )
    return notes


def parameter_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Model parts")
    for column in ("part", "parameters", "trainable", "state"):
        table.add_column(column, justify="right" if column != "part" else "left")
    for row in rows:
        state = "trainable" if row["trainable"] == row["total"] else ("frozen" if row["trainable"] == 0 else "partly")
        table.add_row(row["part"], f"{row['total']:,}", f"{row['trainable']:,}", state)
    return table


def paper_matrix_table(results: dict[str, Any]) -> Table | None:
    """The paper-compatible matrix (%): each column scored by its paper's evaluation script
    (the scorer under its name; "-" where the task names none), rows as in the accuracy
    matrix; ``None`` for a run without paper scorers (:mod:`mcit.evaluation.paper`)."""
    paper = results.get("paper")
    if not paper:
        return None
    table = Table(title="Paper-compatible matrix (%): the same answers scored by each paper's own script (the accuracy matrix holds mcit's scores)")
    table.add_column("after")
    for name in paper["columns"]:
        table.add_column(f"{name}\n{paper['scorers'].get(name) or '-'}", justify="right")
    table.add_row("zero-shot", *[_cell(paper["zero_shot"].get(name)) for name in paper["columns"]])
    for row, values in zip(results["rows"], paper["matrix"]):
        table.add_row(row["after"], *[_cell(value) for value in values])
    return table


def scores_table(result: dict[str, Any]) -> Table:
    """``mcit eval``: one row of scores (%), one column per evaluation set, and a row of the
    paper-compatible scores when some set names a paper scorer."""
    table = Table(title=f"Accuracy (%) of {escape(str(result['model']))}")
    table.add_column("model")
    for name in result["columns"]:
        table.add_column(name, justify="right")
    model = Path(result["model"]).name or result["model"]
    table.add_row(model, *[_cell(result["scores"][n]) for n in result["columns"]])
    if "paper_scores" in result:
        table.add_row(f"{model} (paper's script)", *[_cell(result["paper_scores"].get(n)) for n in result["columns"]])
    return table


def result_tables(results: dict) -> list[Table]:
    """What a finished run shows, in order: the accuracy matrix, the paper-compatible one where a
    task names a paper scorer, and the metrics (the terminal and summary.txt print the same)."""
    paper = paper_matrix_table(results)
    return [matrix_table(results), *([paper] if paper is not None else []), metrics_table(results)]


def summary_text(results: dict[str, Any]) -> str:
    """The accuracy matrix, the metrics and the zero-shot notes as plain text, every table whole.

    Written beside results.json (:data:`SUMMARY_FILE`), so a run's main result can be read
    without the terminal it ran in.
    """
    buffer = io.StringIO()
    console = LogConsole(file=buffer, width=80, color_system=None, highlight=False)
    for table in result_tables(results):
        console.print(table)
    for note in zero_shot_notes(results):
        console.print(f"note: {note}", markup=False)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"
