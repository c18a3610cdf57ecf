"""Accuracy matrices from files, for ``mcit metrics``: a CSV table or a run's ``results.json``.

The CSV is how a matrix travels between papers and toolkits: the first row names the tasks
(after an optional corner cell), each next row holds the scores after one task, its first
cell the task's name, in training order; an empty cell (or ``-``) was not evaluated, as in
the lower triangle MCITlib, CoIN and HiDe-LLaVA report. A row named ``zero-shot`` gives the
scores before any training (FWT needs it). Scores are fractions (0-1) or points (0-100, a
trailing ``%`` allowed); every metric is a mean, difference or max of scores, so it comes
out in the unit it went in. Bad input is one :class:`~mcit.errors.UserError` naming the
file and the line.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcit.errors import UserError
from mcit.metrics import Summary
from mcit.store import read_results_file

NOT_EVALUATED = ("", "-", "\u2013", "\u2014")  # empty, hyphen, en dash, em dash: a paper's blank cell
ZERO_SHOT_LABELS = ("zero-shot", "zero_shot", "zeroshot")
POINTS, FRACTION = "points", "fraction"


@dataclass(frozen=True)
class MatrixFile:
    """A square accuracy matrix read from a file, with what else the file gives.

    Attributes:
        path: The file read.
        tasks: Task names in training order (the columns, and the rows' order).
        matrix: ``matrix[k][i]``: score on task ``i`` after training task ``k``; ``None`` where not evaluated.
        zero_shot: Score of each task before any training, if the file has it.
        test_sizes: Test-set size of each task, if the file has it (results.json).
        unit: ``"points"`` (0-100) or ``"fraction"`` (0-1): the unit of the scores and the metrics.
    """

    path: Path
    tasks: list[str]
    matrix: list[list[float | None]]
    zero_shot: list[float | None] | None = None
    test_sizes: list[float] | None = None
    unit: str = FRACTION

    @property
    def not_evaluated(self) -> int:
        """How many cells of the matrix were not evaluated."""
        return sum(value is None for row in self.matrix for value in row)


def read_matrix_file(path: Path) -> MatrixFile:
    """Read a matrix from a CSV table, a run's ``results.json`` or a run directory.

    Raises:
        UserError: If the file is missing or not a matrix (the message names the file and line).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise UserError(f"{path}: no such file (give a matrix .csv or a run's results.json)")
    if path.suffix.lower() == ".json":
        return matrix_from_results(read_results_file(path) or {}, path)
    return read_matrix_csv(path)


def _score(text: str, where: str) -> tuple[float | None, bool]:
    """A CSV cell as (score or None, whether it carried a % sign)."""
    if text in NOT_EVALUATED:
        return None, False
    percent = text.endswith("%")
    try:
        value = float(text[:-1] if percent else text)
    except ValueError:
        raise UserError(f"{where}: {text!r} is not a score (a number, a percentage, or empty where not evaluated)") from None
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise UserError(f"{where}: {text!r} is out of range: scores are fractions (0-1) or points (0-100)")
    return value, percent


def _records(path: Path) -> list[tuple[int, list[str]]]:
    """The non-blank CSV rows as (line number, stripped cells), trailing empty cells dropped."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a spreadsheet's byte-order mark
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not a UTF-8 text file ({error.reason} at byte {error.start})") from None
    reader = csv.reader(io.StringIO(text), strict=True)  # strict: an unclosed quote is an error, not the rest of the file
    records = []
    try:
        for cells in reader:
            cells = [cell.strip() for cell in cells]
            while cells and cells[-1] == "":  # a spreadsheet pads a lower triangle's rows with commas
                cells.pop()
            if cells:
                records.append((reader.line_num, cells))
    except csv.Error as error:
        raise UserError(f"{path}, line {reader.line_num}: {error}") from None
    return records


def read_matrix_csv(path: Path) -> MatrixFile:
    """Read the CSV table described in the module docstring.

    Raises:
        UserError: One line naming the file and line: no rows, a header that does not name
            one task per row, a repeated task, a row longer than the header, rows in another
            order than the header, a cell that is not a score, a second zero-shot row.
    """
    path = Path(path)
    records = _records(path)
    if not records:
        raise UserError(f"{path}: empty; the first row names the tasks, each next row holds the scores after one task")
    (header_line, header), body = records[0], records[1:]
    zero_shot_rows = [(line, cells) for line, cells in body if cells[0].lower() in ZERO_SHOT_LABELS]
    steps = [(line, cells) for line, cells in body if cells[0].lower() not in ZERO_SHOT_LABELS]
    if len(zero_shot_rows) > 1:
        raise UserError(f"{path}, line {zero_shot_rows[1][0]}: a second zero-shot row")
    if not steps:
        raise UserError(f"{path}: no rows of scores after the header (each row: the task just trained, then its scores)")
    t = len(steps)
    if len(header) not in (t, t + 1):
        raise UserError(
            f"{path}, line {header_line}: the header names {len(header)} columns for {t} row{'s' * (t != 1)} of scores; "
            "the matrix must be square: one column per task (after an optional corner cell), one row after each task"
        )
    tasks = header[len(header) - t :]
    for task in tasks:
        if not task or tasks.count(task) > 1:
            raise UserError(f"{path}, line {header_line}: task names must be non-empty and distinct, got {task!r}")
    labels = [cells[0] for _, cells in steps]
    if sorted(labels) == sorted(tasks) and labels != tasks:
        line, label = next((line, cells[0]) for (line, cells), task in zip(steps, tasks) if cells[0] != task)
        raise UserError(
            f"{path}, line {line}: row {label!r} is out of order; rows follow the header's task order (the training order)"
        )
    percent_seen = False

    def scores(line: int, cells: list[str]) -> list[float | None]:
        nonlocal percent_seen
        if len(cells) - 1 > t:
            raise UserError(f"{path}, line {line}: {len(cells) - 1} scores, but the header names {t} tasks")
        row = []
        for column, text in enumerate(cells[1:], start=2):
            value, percent = _score(text, f"{path}, line {line}, column {column}")
            percent_seen |= percent
            row.append(value)
        return row + [None] * (t - len(row))

    matrix = [scores(line, cells) for line, cells in steps]
    zero_shot = scores(*zero_shot_rows[0]) if zero_shot_rows else None
    values = [v for row in matrix + ([zero_shot] if zero_shot else []) for v in row if v is not None]
    unit = POINTS if percent_seen or any(v > 1 for v in values) else FRACTION
    return MatrixFile(path, tasks, matrix, zero_shot, None, unit)


def _number(value: Any, path: Path, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{path}: {where} is {value!r}, not a score")
    return float(value)


def matrix_from_results(results: dict[str, Any], path: Path) -> MatrixFile:
    """The stream matrix of a run's results (tasks trained so far; fractions; ``null`` not evaluated).

    Raises:
        UserError: For a pool run, a file that is not a run's results, or a run with no task done.
    """
    if results.get("scenario") == "pool":
        raise UserError(f"{path}: a pool run scores skills, not a task stream; its metrics are under 'metrics' in the file")
    tasks, rows = results.get("tasks"), results.get("rows")
    if not isinstance(tasks, list) or not isinstance(rows, list) or len(rows) > len(tasks) or not all(isinstance(r, dict) for r in rows):
        raise UserError(f"{path}: not the results of a stream run (it needs 'tasks' and a 'rows' entry per task done)")
    if not rows:
        raise UserError(f"{path}: no task is done yet, so there is no matrix")
    done = [str(task) for task in tasks[: len(rows)]]
    matrix = [
        [_number((row.get("scores") or {}).get(task), path, f"the score of {task!r} after {row.get('after')!r}") for task in done]
        for row in rows
    ]
    zero_shot, sizes = results.get("zero_shot"), results.get("test_sizes")
    if isinstance(zero_shot, dict):
        zero_shot = [_number(zero_shot.get(task), path, f"the zero-shot score of {task!r}") for task in done]
    else:
        zero_shot = None
    sizes = [sizes.get(task) for task in done] if isinstance(sizes, dict) else None
    if sizes is not None and not all(isinstance(n, int) and not isinstance(n, bool) for n in sizes):
        sizes = None  # a run without a test size per task: FAA is then unavailable, not guessed
    return MatrixFile(path, done, matrix, zero_shot, sizes, FRACTION)


def summary_json(summary: Summary, unit: str) -> dict[str, dict[str, Any]]:
    """``mcit metrics --json``: one entry per registered metric, keyed by its name.

    Each entry: ``value`` (``None`` when unavailable), ``unit``, ``convention`` and
    ``unavailable`` (the reason, or ``None``).
    """
    out = {}
    for name, value in summary.values.items():
        finite = value if value is not None and math.isfinite(value) else None
        out[name] = {
            "value": finite, "unit": unit, "convention": summary.conventions[name], "unavailable": summary.unavailable.get(name),
        }
    return out
