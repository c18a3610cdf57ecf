"""``mcit report``: write the HTML page, its figures and the exports for a set of run directories."""

from __future__ import annotations

import json
from pathlib import Path

from mcit.errors import UserError
from mcit.report.figures import curves, heatmap
from mcit.report.glance import DIFF_CSV, build_glance, diff_table, glance_html
from mcit.report.groups import expand, group_table
from mcit.report.html import RunFigures, render_page
from mcit.report.pool_gain import add_relative_gains
from mcit.report.runs import load_runs, matrix_view
from mcit.report.tables import comparison_table, cost_table, environment_table, latex_tabular, matrices, write_csv


def write_report(run_dirs: list[Path], out: Path) -> Path:
    """Write ``index.html``, two PNG figures per run, ``comparison.csv``/``.tex``, ``cost.csv``, ``matrices.json``.

    The page opens with the runs compared at a glance (:mod:`mcit.report.glance`): one figure
    per task overlaying every run, final accuracy against forgetting, and what differs between
    the runs' configs (``config_diff.csv``). A sweep directory stands for its cells that have
    results, and adds the group table (``groups.csv``/``.tex``). Every run directory is read before anything is written;
    existing files of the same names in ``out`` are replaced, others left alone.

    Args:
        run_dirs: Run directories of ``mcit run`` (complete or not) and sweep directories of ``mcit sweep``.
        out: The report directory (created if needed).

    Returns:
        The path of ``index.html``.

    Raises:
        UserError: For no run directory, one without (or with a corrupt) ``results.json``,
            a sweep none of whose cells has started, or an ``out`` that is a file or cannot be created.
    """
    if not run_dirs:
        raise UserError("give at least one RUN_DIR")
    expanded = expand([Path(run_dir) for run_dir in run_dirs])
    if not expanded.run_dirs:
        raise UserError(f"no cell of {', '.join(map(str, run_dirs))} has results yet")
    runs = load_runs(expanded.run_dirs, expanded.names)
    add_relative_gains(runs)  # pool runs whose sequential run is in the report
    groups = None
    if expanded.cells or expanded.not_started:
        cells = [(cell, runs[index].results) for index, cell in expanded.cells.items()]
        groups = group_table(cells + [(cell, {}) for cell in expanded.not_started])
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create report directory {out}: {e.strerror or e}") from None
    figures = {}
    for run in runs:
        view = matrix_view(run.results)
        title = f"{run.name} {run.note}".strip()
        figures[run.name] = RunFigures(
            heatmap(view, title, out / f"{run.slug}-matrix.png").name,
            curves(view, title, out / f"{run.slug}-curves.png").name,
        )
    glance = build_glance(runs, expanded.cells, groups, out)
    if glance.diff is not None:
        write_csv(diff_table(glance.diff), out / DIFF_CSV)
    comparison, cost = comparison_table(runs), cost_table(runs)
    write_csv(comparison, out / "comparison.csv")
    write_csv(cost, out / "cost.csv")
    (out / "comparison.tex").write_text(latex_tabular(comparison), encoding="utf-8")
    if groups is not None:
        write_csv(groups, out / "groups.csv")
        (out / "groups.tex").write_text(latex_tabular(groups), encoding="utf-8")
    (out / "matrices.json").write_text(json.dumps(matrices(runs), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    page = out / "index.html"
    page.write_text(
        render_page(runs, figures, comparison, cost, environment_table(runs), groups, glance_html(glance), glance.diff is not None),
        encoding="utf-8",
    )
    return page
