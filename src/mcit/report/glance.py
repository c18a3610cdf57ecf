"""The "At a glance" section of ``mcit report``: runs compared in one place.

Three things: final accuracy against forgetting per run (per method, with 95% intervals, for
sweeps), one figure per task overlaying every run's accuracy on it, and the table of what
differs between the runs' configs (:mod:`mcit.report.config_diff`). Each run is a *subject*,
except sweep cells, whose method is: one colour, one legend entry, one column.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcit.report.config_diff import ConfigDiff, Subject, config_diff
from mcit.report.groups import GROUP_METRICS, Estimate, SweepCell
from mcit.report.overlay_figures import Curve, Point, accuracy_against_forgetting, task_curves, task_overlay
from mcit.report.runs import Run, matrix_view, points, read_config
from mcit.report.tables import Column, Table

DIFF_CSV = "config_diff.csv"
SCATTER_PNG = "accuracy-vs-forgetting.png"
ACCURACY, FORGETTING = "final_average_accuracy", "average_forgetting"


@dataclass
class Glance:
    """What the section shows; file names are relative to the page."""

    scatter: str | None = None
    interval: str = ""  # "seeds", "orders" or "" (no interval): what the scatter's bars are over
    overlays: list[tuple[str, str]] = field(default_factory=list)  # (task, figure); eval-only tasks marked *
    diff: ConfigDiff | None = None
    without_config: list[str] = field(default_factory=list)  # runs with no config.yaml
    sweeps: bool = False
    single: bool = False  # one run: nothing to compare


def _with_shared_base(config: dict[str, Any], cell: SweepCell) -> dict[str, Any]:
    """A sweep cell's config with the base stage of the cell that trained its base model."""
    if cell.base_from is None or not config:
        return config
    base = read_config(cell.base_from)
    if not base:
        return config
    config = {**config, "model": {**config.get("model", {}), "name": (base.get("model") or {}).get("name")}}
    config["benchmark"] = {**config.get("benchmark", {}), "base": (base.get("benchmark") or {}).get("base")}
    return config


def _subjects(runs: list[Run], cells: dict[int, SweepCell]) -> tuple[list[str], list[int]]:
    """Each subject's title (a run's name; a sweep method's label with its cell count) and each run's subject."""
    titles: list[str] = []
    of_run: list[int] = []
    group_subject: dict[str, int] = {}
    for index, run in enumerate(runs):
        cell = cells.get(index)
        if cell is None:
            of_run.append(len(titles))
            titles.append(run.name)
            continue
        if cell.group not in group_subject:
            group_subject[cell.group] = len(titles)
            titles.append(cell.group)
        of_run.append(group_subject[cell.group])
    for group, subject in group_subject.items():
        titles[subject] = f"{group} ({of_run.count(subject)} cells)"
    return titles, of_run


def scatter_points(
    runs: list[Run], cells: dict[int, SweepCell], groups: Table | None, titles: list[str], of_run: list[int],
) -> tuple[list[Point], str]:
    """The points of the accuracy-against-forgetting figure, and what their intervals are over.

    Args:
        runs: The report's runs.
        cells: Index in ``runs`` -> its sweep cell, for the runs that are sweep cells.
        groups: The group table of the sweeps (:func:`mcit.report.groups.group_table`), if any.
        titles: Each subject's title (a run, or a sweep method).
        of_run: Each run's subject.

    Returns:
        One point per complete run that is no sweep cell (no interval) and per sweep method (its
        group table's mean and 95% interval), and "seeds" (where some method has two seeds or
        more), else "orders" (where some has two orders), else "".
    """
    rows = {(row["method"], row["metric"]): row for row in (groups.rows if groups is not None else [])}
    axis = next((a for a in ("seeds", "orders") if any((row[f"n_{a}"] or 0) >= 2 for row in rows.values())), "")
    found: list[Point] = []
    for index, run in enumerate(runs):
        cell, subject = cells.get(index), of_run[index]
        if cell is None:
            metrics = run.results.get("metrics") or {}
            accuracy, forgetting = points(metrics.get(ACCURACY)), points(metrics.get(FORGETTING))
            if run.results.get("complete") and accuracy is not None and forgetting is not None:
                found.append(Point(run.name, subject, Estimate(forgetting, None, 1), Estimate(accuracy, None, 1)))
        elif all(point.group != subject for point in found):
            estimates = []
            for key in (FORGETTING, ACCURACY):
                row = rows.get((cell.group, GROUP_METRICS[key]), {})
                over = axis or "seeds"
                estimates.append(Estimate(row.get(f"mean_over_{over}"), row.get(f"ci95_over_{over}"), row.get(f"n_{over}") or 0))
            if all(estimate.mean is not None for estimate in estimates):
                found.append(Point(titles[subject], subject, *estimates))
    return found, axis


def _overlays(runs: list[Run], titles: list[str], of_run: list[int], out: Path) -> list[tuple[str, str]]:
    """One figure per task (or skill), every run that has it overlaid: (task, eval-only marked *; file name)."""
    by_task: dict[str, list[Curve]] = {}
    eval_only: set[str] = set()
    for run, subject in zip(runs, of_run):
        if not run.pool:
            eval_only.update(run.results.get("eval_only") or [])
        for task, curve in task_curves(matrix_view(run.results), titles[subject], subject).items():
            by_task.setdefault(task, []).append(curve)
    overlays = []
    for number, (task, curves) in enumerate(by_task.items(), 1):
        figure = task_overlay(task, curves, len(titles), task in eval_only, out / f"task{number:02d}-overlay.png")
        overlays.append((f"{task}*" if task in eval_only else task, figure.name))
    return overlays


def build_glance(runs: list[Run], cells: dict[int, SweepCell], groups: Table | None, out: Path) -> Glance:
    """Draw the section's figures into ``out`` and compare the configs; nothing for a single run
    (its own figures show it all)."""
    glance = Glance(sweeps=bool(cells), single=len(runs) < 2)
    if glance.single:
        return glance
    titles, of_run = _subjects(runs, cells)
    found, glance.interval = scatter_points(runs, cells, groups, titles, of_run)
    if len(found) >= 2 or any(p.forgetting.half_width is not None or p.accuracy.half_width is not None for p in found):
        glance.scatter = accuracy_against_forgetting(found, len(titles), glance.interval, out / SCATTER_PNG).name
    glance.overlays = _overlays(runs, titles, of_run, out)
    configs: list[list[dict[str, Any]]] = [[] for _ in titles]
    for index, (run, subject) in enumerate(zip(runs, of_run)):
        if not run.config:
            glance.without_config.append(run.name)
            continue
        cell = cells.get(index)
        configs[subject].append(_with_shared_base(run.config, cell) if cell else run.config)
    compared = [Subject(title, resolved) for title, resolved in zip(titles, configs) if resolved]
    if sum(len(subject.configs) for subject in compared) >= 2:
        glance.diff = config_diff(compared)
    return glance


def diff_table(diff: ConfigDiff) -> Table:
    """The config differences as a table for ``config_diff.csv`` (empty cell: the run has no such key)."""
    columns = [Column("setting", "setting", "text"), Column("changes_results", "changes results", "text")]
    columns += [Column(title, title, "text") for title in diff.subjects]
    rows = [
        {"setting": row.key, "changes_results": "false" if row.neutral else "true",
         **{title: "" if cell == "-" else cell for title, cell in zip(diff.subjects, row.cells)}}
        for row in diff.rows
    ]
    return Table(columns, rows)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _figure(name: str, alt: str, caption: str) -> str:
    return f'<figure><img src="{_e(name)}" alt="{_e(alt)}"><figcaption>{_e(caption)}</figcaption></figure>'


def _diff_html(glance: Glance) -> str:
    diff = glance.diff
    missing = (f'<p class="muted">Left out, without a <code>config.yaml</code>: {_e(", ".join(glance.without_config))}.</p>'
               if glance.without_config else "")
    if diff is None:
        return missing + '<p class="muted">Fewer than two runs have a <code>config.yaml</code>: no settings to compare.</p>'
    if not diff.rows:
        return missing + f"<p>The runs' configs are identical ({diff.shared} settings).</p>"
    head = "".join(f"<th>{_e(title)}</th>" for title in diff.subjects)
    body, span = [], len(diff.subjects) + 1
    for number, row in enumerate(diff.rows):
        if row.neutral is not None and (number == 0 or diff.rows[number - 1].neutral is None):
            body.append(f'<tr><th colspan="{span}" class="part">results-neutral settings: they cannot change the results</th></tr>')
        why = f'<br><span class="muted">{_e(row.neutral.why)}</span>' if row.neutral else ""
        unusual = row.unusual
        cells = "".join(f'<td class="unusual"><code>{_e(cell)}</code></td>' if index in unusual else f"<td><code>{_e(cell)}</code></td>"
                        for index, cell in enumerate(row.cells))
        body.append(f'<tr><td><code class="key">{_e(row.key)}</code>{why}</td>{cells}</tr>')
    sweeps = (" A sweep method's column holds its cells: a setting that differs among them shows each value once; "
              "cells that start from their seed's shared base model show the base stage that trained it.") if glance.sweeps else ""
    return (
        f'<p class="muted">Only the settings whose values are not the same in every run (dotted keys of <code>config.yaml</code>, '
        f"as <code>key=value</code> overrides write them; a part some runs leave null, such as <code>model.lora</code>, is one "
        f"row with its whole value; &ldquo;-&rdquo;: not a setting of that run, e.g. another method's option); "
        f'<span class="unusual">highlighted</span>: a value other than the most common one of its row.{_e(sweeps)} '
        f"Exported as <a href=\"{DIFF_CSV}\">{DIFF_CSV}</a>.</p>\n{missing}"
        f'<table class="diff">\n<thead><tr><th>setting</th>{head}</tr></thead>\n<tbody>\n' + "\n".join(body)
        + f"\n</tbody>\n</table>\n<p>All runs share every other setting ({diff.shared} settings).</p>"
    )


def glance_html(glance: Glance) -> str:
    """The section as HTML (every string from a run escaped)."""
    parts = ["<h2>At a glance</h2>"]
    if glance.single:
        return "\n".join(parts + ['<p class="muted">One run: nothing to compare.</p>'])
    if glance.scatter:
        what = "each sweep method's mean over its complete cells and each complete run" if glance.sweeps else "each complete run"
        if glance.interval:
            what += f"; bars: the 95% Student-t interval over {glance.interval}, as in the method groups table"
        parts.append(_figure(glance.scatter, "final average accuracy against average forgetting",
                             f"final average accuracy against average forgetting (points): {what}"))
    parts.append("<h3>Each task in every run</h3>")
    parts.append(
        '<p class="muted">One figure per task (eval-only tasks marked *): its accuracy (%) at zero-shot and after each '
        f"step, one line per run that has the task{' (the cells of one sweep method share a colour)' if glance.sweeps else ''}. "
        "A star marks the step that trained the task; runs of other task orders trained it at other steps, and the fall "
        "after the star is that run's forgetting.</p>"
    )
    parts.append("\n".join(_figure(name, f"accuracy on {task} in every run", f"{task}: accuracy (%) in every run")
                           for task, name in glance.overlays))
    parts.append("<h3>What differs between the runs</h3>")
    parts.append(_diff_html(glance))
    return "\n".join(parts)
