"""The comparison, cost and environment tables of ``mcit report``, and their CSV, LaTeX and JSON exports.

A table holds raw values (accuracies in points, i.e. 100x the stored fractions); ``cells``
formats them for the page and the LaTeX table (one decimal, "-" when absent or undefined),
``write_csv`` writes them to :data:`CSV_DECIMALS` decimals (an empty cell when absent), so
float noise such as the ``4.5e-14`` interval of identical values reads ``0.0`` in both.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcit.report.runs import (
    Run,
    directory_bytes,
    matrix_view,
    newest_checkpoint,
    paper_view,
    points,
    strategy_state_bytes,
)

# results["metrics"] key -> column title; values are fractions. A title names the convention where
# the field has several (forgetting, Avg); the page lists every one (mcit.metrics.CONVENTIONS).
METRICS = {
    "final_average_accuracy": "final avg acc",
    "mean_finetune_accuracy": "MFT",
    "mean_average_accuracy": "MAA",
    "column_average_accuracy": "Avg (column-wise)",
    "average_forgetting": "avg forgetting (from own training)",
    "average_forgetting_coinpp": "avg forgetting (CoIN++)",
    "backward_transfer": "BWT",
    "forward_transfer": "FWT",
}
FORGETTING_RATE = "forgetting_rate"  # pool runs: LAMP's rate, already in percent (a float, or a dict with "overall")
RELATIVE_GAIN = "relative_gain"  # pool runs, when the report has their sequential run (report.pool_gain): a fraction
# Stream runs' Deltas (fractions): "section" or "section:group" of results -> column title.
DELTAS = {
    "linguistic_forgetting:all": "language Delta",  # the paper's headline: harmonic mean over every language set
    "linguistic_forgetting:nlu": "NLU Delta",  # its breakdown: plain mean of the kind's sets
    "linguistic_forgetting:nlg": "NLG Delta",
    "vision_language_forgetting": "VL Delta",
}


@dataclass(frozen=True)
class Column:
    key: str  # the CSV header
    title: str  # the page's and LaTeX's header
    kind: str = "points"  # text, points, seconds, mib, count


@dataclass
class Table:
    columns: list[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def cells(self) -> list[list[str]]:
        return [[_display(row.get(c.key), c.kind) for c in self.columns] for row in self.rows]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


CSV_DECIMALS = 6  # finer than any score (1 in 10^6 samples is 1e-4 points); coarser than float noise


def rounded(value: float, decimals: int) -> float:
    """``value`` rounded, with -0.0 as 0.0 (a tiny negative noise must not print as "-0.0")."""
    return round(value, decimals) + 0.0


def one_decimal(value: float) -> str:
    """How the page, LaTeX and terminal tables show a number: one decimal, never "-0.0"."""
    return f"{rounded(value, 1):.1f}"


def _display(value: Any, kind: str) -> str:
    if _missing(value):
        return "-"
    if kind in ("points", "seconds", "mib"):
        return one_decimal(value)
    if kind == "count":
        return f"{value:,}"
    return str(value)


def rate(value: Any) -> float | None:
    if isinstance(value, dict):
        value = value.get("overall")
    return None if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) else float(value)


LANGUAGE_FORGETTING = "language_forgetting:"  # + an eval-only task's name: its forgetting vs zero-shot (a fraction)


def language_forgetting(results: dict[str, Any], name: str) -> Any:
    """The forgetting of eval-only task ``name`` (``results["language"]``), or None."""
    entry = (results.get("language") or {}).get(name)
    return entry.get("forgetting") if isinstance(entry, dict) else None


def delta(results: dict[str, Any], key: str) -> Any:
    """The ``forgetting`` of the entry a :data:`DELTAS` key names, or None."""
    section, _, group = key.partition(":")
    entry = results.get(section)
    if group and isinstance(entry, dict):
        entry = entry.get(group)
    return entry.get("forgetting") if isinstance(entry, dict) else None


def comparison_table(runs: list[Run]) -> Table:
    """One row per run: methods, the stream metrics in points, LAMP's gain and rate, the NLU/NLG/VL Deltas, each eval-only task's forgetting.

    A gain, rate or Delta column appears only when some run has it (runs from before the Deltas
    have none; the gain needs the sequential run in the report).
    """
    columns = [Column("run", "run", "text"), Column("methods", "methods", "text"), Column("steps", "steps", "text")]
    columns += [Column(key, title) for key, title in METRICS.items()]
    if any(RELATIVE_GAIN in (run.results.get("metrics") or {}) for run in runs):
        columns.append(Column(RELATIVE_GAIN, "relative gain (%)"))
    if any(FORGETTING_RATE in (run.results.get("metrics") or {}) for run in runs):
        columns.append(Column(FORGETTING_RATE, "forgetting rate (%)"))
    deltas = [key for key in DELTAS if any(delta(run.results, key) is not None for run in runs)]
    columns += [Column(key, DELTAS[key]) for key in deltas]
    language: list[str] = []
    for run in runs:
        language += [name for name in run.results.get("language") or {} if name not in language]
    columns += [Column(f"{LANGUAGE_FORGETTING}{name}", f"{name}* forgetting") for name in language]
    table = Table(columns)
    for run in runs:
        metrics = run.results.get("metrics") or {}
        done, total = run.steps
        row: dict[str, Any] = {
            "run": run.name, "methods": "+".join(run.results.get("methods") or []), "steps": f"{done}/{total}",
        }
        row.update({key: points(metrics.get(key)) for key in METRICS})
        row[RELATIVE_GAIN] = points(metrics.get(RELATIVE_GAIN))
        row[FORGETTING_RATE] = rate(metrics.get(FORGETTING_RATE))
        row.update({key: points(delta(run.results, key)) for key in deltas})
        for name in run.results.get("language") or {}:
            row[f"{LANGUAGE_FORGETTING}{name}"] = points(language_forgetting(run.results, name))
        table.rows.append(row)
    return table


def _sum(values: list[Any]) -> float | None:
    present = [v for v in values if isinstance(v, (int, float)) and not _missing(v)]
    return float(sum(present)) if present else None


def _max(values: list[Any]) -> float | None:
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return max(numbers) if numbers else None


def _growth(rows: list[dict[str, Any]]) -> int | None:
    """Parameters the methods added to the model over the stream (adapters or projectors per task).

    The last row's ``model_parameters`` (after its step) minus the first row's
    ``model_parameters_before`` (when its step started): sizes written as those steps ran
    (:mod:`mcit.model_size`), not the parameter table a resumed run recounts at its restart
    with the finished tasks' modules back in. Rows without the start size (runs of older
    versions) give None.
    """
    if not rows:
        return None
    start, end = rows[0].get("model_parameters_before"), rows[-1].get("model_parameters")
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in (start, end)):
        return None
    return end - start


def cost_table(runs: list[Run]) -> Table:
    """One row per run: training, evaluation (and selection) seconds, trainable parameters and the
    parameters methods added, peak host and GPU memory (the largest step's), checkpoint sizes."""
    columns = [Column("run", "run", "text"), Column("train_seconds", "train (s)", "seconds"),
               Column("eval_seconds", "eval incl. zero-shot (s)", "seconds")]
    if any(run.pool for run in runs):
        columns.append(Column("selection_seconds", "selection (s)", "seconds"))
    columns += [
        Column("trainable_parameters", "trainable parameters", "count"),
        Column("model_growth", "parameters added over the stream", "count"),
        Column("peak_host_mb", "peak host memory (MiB)", "mib"),
        Column("peak_gpu_mb", "peak GPU memory (MiB)", "mib"),
        Column("checkpoint", "newest checkpoint", "text"),
        Column("strategy_state_bytes", "strategy state (bytes: its tensors + JSON)", "count"),
        Column("checkpoint_bytes", "whole checkpoint directory (bytes)", "count"),
    ]
    table = Table(columns)
    for run in runs:
        rows = run.results.get("rows") or []
        evals = [row.get("eval_seconds") for row in rows] + [run.results.get("zero_shot_eval_seconds")]
        parameters = run.results.get("parameters")
        parameters = parameters if isinstance(parameters, list) else None
        trainable = None if parameters is None else sum(int(p.get("trainable") or 0) for p in parameters if isinstance(p, dict))
        checkpoint = newest_checkpoint(run.path)
        table.rows.append({
            "run": run.name,
            "train_seconds": _sum([row.get("train_seconds") for row in rows]),
            "eval_seconds": _sum(evals),
            "selection_seconds": _sum([row.get("selection_seconds") for row in rows]),
            "trainable_parameters": trainable,
            "model_growth": _growth(rows),
            "peak_host_mb": _max([row.get("peak_host_mb") for row in rows]),
            "peak_gpu_mb": _max([row.get("peak_gpu_mb") for row in rows]),
            "checkpoint": checkpoint.name if checkpoint else None,
            "strategy_state_bytes": strategy_state_bytes(checkpoint) if checkpoint else None,
            "checkpoint_bytes": directory_bytes(checkpoint) if checkpoint else None,
        })
    return table


def environment_table(runs: list[Run]) -> Table:
    """Where each run ran: python, torch, device, threads (``results["environment"]``)."""
    keys = ("python", "torch", "device", "threads", "platform")
    table = Table([Column("run", "run", "text")] + [Column(key, key, "text") for key in keys])
    for run in runs:
        environment = run.results.get("environment") or {}
        row = {key: environment.get(key) for key in keys}
        row["torch"] = (environment.get("packages") or {}).get("torch")
        table.rows.append({"run": run.name, **row})
    return table


def _csv_cell(value: Any) -> Any:
    if _missing(value):
        return ""
    return rounded(value, CSV_DECIMALS) if isinstance(value, float) else value


def write_csv(table: Table, path: Path) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([c.key for c in table.columns])
        for row in table.rows:
            writer.writerow([_csv_cell(row.get(c.key)) for c in table.columns])


_LATEX = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(char, char) for char in text)


def latex_tabular(table: Table) -> str:
    """The table as a LaTeX ``tabular`` (no packages needed), every string escaped."""
    spec = "".join("l" if c.kind == "text" else "r" for c in table.columns)
    lines = [f"\\begin{{tabular}}{{{spec}}}", "\\hline", " & ".join(latex_escape(c.title) for c in table.columns) + r" \\"]
    lines.append("\\hline")
    lines += [" & ".join(latex_escape(cell) for cell in cells) + r" \\" for cells in table.cells()]
    lines += ["\\hline", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def matrices(runs: list[Run]) -> dict[str, Any]:
    """Each run's columns, row labels and matrix in points (``matrices.json``)."""
    out = []
    for run in runs:
        view, paper = matrix_view(run.results), paper_view(run.results)
        out.append({
            "run": run.name, "path": str(run.path), "scenario": run.results.get("scenario"),
            "methods": run.results.get("methods") or [], "complete": bool(run.results.get("complete")),
            "columns": view.columns, "eval_only": [] if run.pool else list(run.results.get("eval_only") or []),
            "rows": view.rows, "matrix": view.values,
            # the same answers scored by each column's paper scorer (mcit.evaluation.paper)
            **({} if paper is None else {"paper_columns": paper.columns, "paper_rows": paper.rows, "paper_matrix": paper.values}),
        })
    return {"unit": "points (100 x the score in results.json)", "runs": out}
