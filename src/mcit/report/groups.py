"""Sweep directories in ``mcit report``: their cells as runs, and each method's group table.

A sweep directory (one with ``sweep.json``, see :mod:`mcit.sweep`) stands for its cells that
have results. The cells of one method label form a group; for each metric the group table
gives the mean and a 95% Student-t confidence interval over seeds (each seed's value the mean
over its orders) and over orders (each order's value the mean over seeds). Only complete
cells count: an unfinished cell's metrics describe a shorter stream.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcit.report.runs import points
from mcit.report.tables import (
    DELTAS,
    FORGETTING_RATE,
    LANGUAGE_FORGETTING,
    METRICS,
    RELATIVE_GAIN,
    Column,
    Table,
    delta,
    language_forgetting,
    one_decimal,
    rate,
)
from mcit.store import read_sweep

# Group-table metric -> title: the stream metrics always; the Deltas (tables.DELTAS) and pool runs'
# relative gain and forgetting rate (both in percent) when some cell has them; then each eval-only
# task's forgetting (tables.LANGUAGE_FORGETTING), as the comparison table has it.
ALWAYS = ("final_average_accuracy", "average_forgetting", "backward_transfer")
POOL = {RELATIVE_GAIN: "relative gain (%)", FORGETTING_RATE: "forgetting rate (%)"}
GROUP_METRICS: dict[str, str] = {**{key: METRICS[key] for key in ALWAYS}, **DELTAS, **POOL}
CONFIDENCE = 0.95


@dataclass(frozen=True)
class SweepCell:
    group: str  # the method label (prefixed by the sweep's name when several sweeps are reported)
    seed: int
    order: int
    path: Path
    base_from: Path | None = None  # the cell whose base model it starts from (sweep.json), if not its own


@dataclass
class Expanded:
    """What ``mcit report``'s arguments stand for: run directories (with names) and the sweep cells among them."""

    run_dirs: list[Path] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    cells: dict[int, SweepCell] = field(default_factory=dict)  # index in run_dirs -> its cell
    not_started: list[SweepCell] = field(default_factory=list)


def expand(paths: list[Path]) -> Expanded:
    """Replace each sweep directory by its cells that have a ``results.json`` (others are listed as not started)."""
    sweeps = [Path(p) for p in paths if read_sweep(Path(p)) is not None]
    expanded = Expanded()
    for path in map(Path, paths):
        description = read_sweep(path)
        if description is None:
            expanded.run_dirs.append(path)
            expanded.names.append(path.resolve().name or "run")
            continue
        prefix = f"{path.resolve().name}/" if len(sweeps) > 1 else ""
        for entry in description["cells"]:
            base_from = path / entry["base_from"] if entry.get("base_from") else None
            cell = SweepCell(f"{prefix}{entry['method']}", int(entry["seed"]), int(entry["order"]), path / entry["path"], base_from)
            if not (cell.path / "results.json").is_file():
                expanded.not_started.append(cell)
                continue
            expanded.cells[len(expanded.run_dirs)] = cell
            expanded.run_dirs.append(cell.path)
            expanded.names.append(f"{prefix}{entry['path']}")
    return expanded


@dataclass(frozen=True)
class Estimate:
    """A mean and the half-width of its 95% interval (None for n < 2: one value gives no interval)."""

    mean: float | None
    half_width: float | None
    n: int


def estimate(values: list[float]) -> Estimate:
    """Mean and 95% Student-t half-width ``t(0.975, n-1) * s / sqrt(n)`` (s: the sample standard deviation)."""
    if not values:
        return Estimate(None, None, 0)
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Estimate(mean, None, 1)
    from scipy.stats import t

    quantile = float(t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1))
    return Estimate(mean, quantile * statistics.stdev(values) / math.sqrt(len(values)), len(values))


def metric_points(results: dict[str, Any], key: str) -> float | None:
    """A group metric of one cell in points; None where absent or undefined."""
    if key in DELTAS:
        return points(delta(results, key))
    if key == FORGETTING_RATE:  # already in percent
        return rate((results.get("metrics") or {}).get(key))
    if key.startswith(LANGUAGE_FORGETTING):
        return points(language_forgetting(results, key.removeprefix(LANGUAGE_FORGETTING)))
    return points((results.get("metrics") or {}).get(key))


def _over(values: dict[tuple[int, int], float], axis: int) -> Estimate:
    """The estimate over seeds (axis 0) or orders (axis 1), each level's value the mean over the other axis."""
    levels: dict[int, list[float]] = {}
    for cell, value in values.items():
        levels.setdefault(cell[axis], []).append(value)
    return estimate([statistics.fmean(level) for _, level in sorted(levels.items())])


def group_table(cells: list[tuple[SweepCell, dict[str, Any]]]) -> Table:
    """One row per method and metric: complete cells, then mean, 95% interval half-width and n over seeds and over orders (points)."""
    columns = [Column("method", "method", "text"), Column("metric", "metric", "text"), Column("cells", "complete cells", "text")]
    for axis in ("seeds", "orders"):
        columns += [
            Column(f"mean_over_{axis}", f"mean over {axis}"),
            Column(f"ci95_over_{axis}", f"95% CI +/- over {axis}"),
            Column(f"n_{axis}", f"n {axis}", "count"),
        ]
    table = Table(columns)
    groups: dict[str, list[tuple[SweepCell, dict[str, Any]]]] = {}
    for cell, results in cells:
        groups.setdefault(cell.group, []).append((cell, results))
    present = {
        key: title for key, title in GROUP_METRICS.items()
        if key in ALWAYS or any(metric_points(results, key) is not None for _, results in cells)
    }
    for _, results in cells:
        for name in results.get("language") or {}:
            present.setdefault(f"{LANGUAGE_FORGETTING}{name}", f"{name}* forgetting")
    for group, members in groups.items():
        complete = [(cell, results) for cell, results in members if results.get("complete") is True]
        for key, title in present.items():
            values = {(cell.seed, cell.order): metric_points(results, key) for cell, results in complete}
            values = {where: value for where, value in values.items() if value is not None}
            row: dict[str, Any] = {"method": group, "metric": title, "cells": f"{len(complete)}/{len(members)}"}
            for axis, name in ((0, "seeds"), (1, "orders")):
                result = _over(values, axis)
                row.update({f"mean_over_{name}": result.mean, f"ci95_over_{name}": result.half_width, f"n_{name}": result.n})
            table.rows.append(row)
    return table


def spread(row: dict[str, Any], axis: str) -> str:
    """A group row's estimate over ``axis`` ("seeds" or "orders") as text: ``45.2 ± 3.1 (n=3)``."""
    mean, half_width, n = row[f"mean_over_{axis}"], row[f"ci95_over_{axis}"], row[f"n_{axis}"]
    if mean is None:
        return "-"
    if half_width is None:
        return f"{one_decimal(mean)} (n={n}: no interval)"
    return f"{one_decimal(mean)} ± {one_decimal(half_width)} (n={n})"
