"""Terminal tables of a run's results (rich)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rich.table import Table


def _cell(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def matrix_table(results: dict[str, Any]) -> Table:
    """Accuracy (%) after every step on every task; eval-only columns marked with *."""
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
        table.add_row(row["after"], *[_cell(row["scores"][n]) for n in names + extra])
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
    """The stream metrics (in points), the linguistic forgetting of each eval-only task and
    of each language kind (NLU, NLG: Delta of the harmonic mean), and the vision-language Delta."""
    table = Table(title="Metrics (points)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in results.get("metrics", {}).items():
        if name.startswith("forgetting_rate"):  # LAMP's rate is already in percent
            values = value.items() if isinstance(value, dict) else [("", value)]
            for skill, rate in values:
                table.add_row(f"{name} {skill}".strip(), "-" if rate is None or rate != rate else f"{rate:.1f}")
        elif isinstance(value, (int, float)) or value is None:
            table.add_row(name, _cell(value))
    for name, entry in results.get("language", {}).items():
        table.add_row(f"{name}* forgetting vs zero-shot", _cell(entry["forgetting"]))
    for kind, group in results.get("linguistic_forgetting", {}).items():
        table.add_row(f"{kind.upper()} Delta vs zero-shot ({', '.join(group['tasks'])})", _cell(group["forgetting"]))
    if "vision_language_forgetting" in results:
        table.add_row("VL Delta (each task vs just after it)", _cell(results["vision_language_forgetting"]["forgetting"]))
    seconds = sum(r["train_seconds"] + r["eval_seconds"] for r in results["rows"])
    table.add_row("stream wall time (s)", f"{seconds:.1f}")
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


def scores_table(result: dict[str, Any]) -> Table:
    """``mcit eval``: one row of scores (%), one column per evaluation set."""
    table = Table(title=f"Accuracy (%) of {result['model']}")
    table.add_column("model")
    for name in result["columns"]:
        table.add_column(name, justify="right")
    table.add_row(Path(result["model"]).name or result["model"], *[_cell(result["scores"][n]) for n in result["columns"]])
    return table
