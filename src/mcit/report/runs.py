"""Reading run directories for ``mcit report``: results, the matrix in points, checkpoint sizes.

Read only: a report never cleans, locks or rewrites a run directory (a run may still be
writing it), so the files are read here rather than through :class:`mcit.store.RunStore`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcit.errors import UserError
from mcit.report.image_check import read_image_check
from mcit.state_tree import state_part_bytes
from mcit.store import CONFIG_FILE, STEP_PREFIX, read_config_file, read_results_file


@dataclass(frozen=True)
class Run:
    """One run directory's results, under a name unique within the report."""

    name: str  # the directory name (suffixed -2, -3, ... when two directories share one)
    slug: str  # the name as it appears in file names
    path: Path
    results: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)  # its config.yaml ({} if it has none)
    image_check: dict[str, Any] | None = None  # its image_check.json (mcit.report.image_check), if any

    @property
    def pool(self) -> bool:
        return self.results.get("scenario") == "pool"

    @property
    def steps(self) -> tuple[int, int]:
        """(steps done, steps in the stream)."""
        planned = self.results.get("datasets" if self.pool else "tasks") or []
        return len(self.results.get("rows") or []), len(planned)

    @property
    def note(self) -> str:
        """"(incomplete: N of M steps)" for a run that has not finished, else ""."""
        if self.results.get("complete"):
            return ""
        done, total = self.steps
        return f"(incomplete: {done} of {total} steps)"


def points(value: Any) -> float | None:
    """A fraction as points (100x); None for None, NaN, infinities and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return 100.0 * value


def read_results(run_dir: Path) -> dict[str, Any]:
    """``run_dir/results.json`` as a dict; UserError (one line) if it is missing or not a JSON object."""
    path = run_dir / "results.json"
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a run directory (no such directory)")
    results = read_results_file(path)
    if results is None:
        raise UserError(f"{run_dir} is not a run directory: it has no results.json")
    if not isinstance(results.get("rows", []), list):
        raise UserError(f"corrupt results file {path}: not the results of a run")
    return results


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's resolved ``config.yaml`` ({} when it has none, or it is unreadable or not a mapping)."""
    try:
        return read_config_file(run_dir / CONFIG_FILE) or {}
    except (OSError, UserError):
        return {}


def load_runs(run_dirs: list[Path], names: list[str] | None = None) -> list[Run]:
    """Every run directory's results, in the order given, each under a unique name and file-name slug.

    Names are the directories' own (or ``names``, one per directory), suffixed -2, -3, ... where two share one.
    """
    runs: list[Run] = []
    for index, run_dir in enumerate(run_dirs):
        run_dir = Path(run_dir)
        results = read_results(run_dir)
        base = names[index] if names is not None else run_dir.resolve().name or "run"
        name, slug, count = base, _slug(base), 1
        while any(name == r.name or slug.lower() == r.slug.lower() for r in runs):  # case: macOS file systems
            count += 1
            name, slug = f"{base}-{count}", _slug(f"{base}-{count}")
        runs.append(Run(name, slug, run_dir, results, read_config(run_dir), read_image_check(run_dir)))
    return runs


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).lstrip(".") or "run"


@dataclass(frozen=True)
class MatrixView:
    """A run's scores in points: rows = zero-shot (if evaluated) then after each step."""

    columns: list[str]  # task (or skill) names
    labels: list[str]  # column labels: eval-only tasks marked *
    rows: list[str]
    values: list[list[float | None]]
    axis: str = "evaluated on (* = eval-only)"  # what the columns are


def matrix_view(results: dict[str, Any]) -> MatrixView:
    """The accuracy matrix (stream: tasks then eval-only tasks; pool: skills) in points."""
    if results.get("scenario") == "pool":
        columns = list(results.get("skills") or [])
        labels = list(columns)
    else:
        tasks, extra = list(results.get("tasks") or []), list(results.get("eval_only") or [])
        columns, labels = tasks + extra, tasks + [f"{name}*" for name in extra]
    scored = []
    if results.get("zero_shot"):
        scored.append(("zero-shot", results["zero_shot"]))
    scored += [(str(row.get("after", "?")), row.get("scores") or {}) for row in results.get("rows") or []]
    values = [[points(scores.get(name)) for name in columns] for _, scores in scored]
    axis = "skill" if results.get("scenario") == "pool" else MatrixView.axis
    return MatrixView(columns, labels, [label for label, _ in scored], values, axis)


def paper_view(results: dict[str, Any]) -> MatrixView | None:
    """The paper-compatible matrix in points (:mod:`mcit.evaluation.paper`): zero-shot then each
    row; each column labelled with its paper scorer ("-" where none); None for a run without one."""
    paper = results.get("paper")
    if not paper:
        return None
    columns = list(paper["columns"])
    labels = [f"{name} ({paper['scorers'].get(name) or '-'})" for name in columns]
    rows = ["zero-shot"] + [str(row.get("after", "?")) for row in results.get("rows") or []]
    values = [[points(paper["zero_shot"].get(name)) for name in columns]]
    values += [[points(value) for value in row] for row in paper["matrix"]]
    return MatrixView(columns, labels, rows, values, "evaluated on (paper scorer)")


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The newest committed step checkpoint ``checkpoints/task-NNN`` (None if none is kept)."""
    directory = run_dir / "checkpoints"
    if not directory.is_dir():
        return None
    found = [p for p in directory.iterdir() if p.is_dir() and re.fullmatch(rf"{STEP_PREFIX}\d+", p.name)]
    return max(found, key=lambda p: int(p.name[len(STEP_PREFIX) :]), default=None)


def directory_bytes(directory: Path) -> int:
    """The summed size of every file under ``directory`` (links not followed)."""
    return sum(p.lstat().st_size for p in directory.rglob("*") if p.is_file() and not p.is_symlink())


def strategy_state_bytes(checkpoint: Path) -> int | None:
    """Bytes of the strategy part of a checkpoint (its JSON plus its tensors); None if unreadable."""
    try:
        return state_part_bytes(checkpoint, "strategy")
    except (OSError, ValueError, KeyError, TypeError):
        return None
