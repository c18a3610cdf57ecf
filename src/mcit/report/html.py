"""The page of ``mcit report``: one self-contained HTML file (inline CSS, no scripts, no external resources).

Every string that comes from a run (names, methods, task names, environment) is escaped;
images are referenced by their file name, relative to the page.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from mcit.metrics import CONVENTIONS
from mcit.report.image_check import COLUMNS as IMAGE_CHECK_COLUMNS
from mcit.report.image_check import image_check_notes, image_check_rows, image_check_summary
from mcit.report.runs import Run, matrix_view, paper_view
from mcit.report.tables import METRICS, Column, Table

EXPORTS = {
    "comparison.csv": "the comparison table (accuracies in points, to 6 decimals; empty = undefined)",
    "comparison.tex": "the comparison table as a LaTeX tabular",
    "cost.csv": "the cost table",
    "matrices.json": "each run's columns, row labels and accuracy matrix in points (and its paper-compatible matrix)",
}
DIFF_EXPORTS = {
    "config_diff.csv": "the settings that differ between the runs' configs, one column per run or sweep method "
    "(changes_results: false for a results-neutral setting; empty = not a setting of that run)",
}
GROUP_EXPORTS = {
    "groups.csv": "the group table of the sweeps (points, to 6 decimals; empty = undefined or no interval)",
    "groups.tex": "the group table as a LaTeX tabular",
}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 80em; padding: 0 1em;
       color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; } h3 { margin-top: 1.5em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #a33; font-weight: normal; } .muted { color: #666; font-size: 0.9em; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; } figcaption { font-size: 0.85em; color: #555; }
code { background: #f5f5f5; padding: 0 0.2em; }
table.diff td { overflow-wrap: anywhere; min-width: 7em; max-width: 30em; vertical-align: top; }
table.diff code.key { white-space: nowrap; } .unusual, .unusual code { background: #ffe9a8; }
table.diff th.part { text-align: left; font-weight: normal; font-style: italic; background: #fafafa; }
"""


@dataclass(frozen=True)
class RunFigures:
    matrix: str  # file names, relative to the page
    curves: str


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def table_html(table: Table) -> str:
    head = "".join(f"<th>{_e(c.title)}</th>" for c in table.columns)
    body = []
    for cells in table.cells():
        tds = "".join(
            f'<td class="num">{_e(cell)}</td>' if c.kind != "text" else f"<td>{_e(cell)}</td>"
            for c, cell in zip(table.columns, cells)
        )
        body.append(f"<tr>{tds}</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


def _run_list(runs: list[Run]) -> str:
    items = []
    for run in runs:
        note = f' <span class="note">{_e(run.note)}</span>' if run.note else ""
        items.append(f'<li><a href="#run-{_e(run.slug)}">{_e(run.name)}</a>{note}: <code>{_e(run.path)}</code></li>')
    return "<ul>\n" + "\n".join(items) + "\n</ul>"


def _run_section(run: Run, figures: RunFigures) -> str:
    note = f' <span class="note">{_e(run.note)}</span>' if run.note else ""
    methods = "+".join(run.results.get("methods") or []) or "-"
    kind = "pool" if run.pool else "stream"
    over = "skills" if run.pool else "tasks (* = eval-only, never trained)"
    images = "".join(
        f'<figure><img src="{_e(name)}" alt="{_e(caption)} of {_e(run.name)}"><figcaption>{_e(caption)}</figcaption></figure>'
        for name, caption in (
            (figures.matrix, f"accuracy matrix (%): rows = zero-shot then after each step, columns = {over}"),
            (figures.curves, f"accuracy (%) of each of the {over.split(' ')[0]} over the stream"),
        )
    )
    return (
        f'<section id="run-{_e(run.slug)}">\n<h3>{_e(run.name)}{note}</h3>\n'
        f'<p class="muted">{_e(kind)} scenario, methods {_e(methods)}, <code>{_e(run.path)}</code></p>\n{images}\n'
        f"{_paper_matrix(run)}</section>"
    )


def _paper_matrix(run: Run) -> str:
    """The run's paper-compatible matrix as a table (empty for a run without paper scorers)."""
    view = paper_view(run.results)
    if view is None:
        return ""
    columns = [Column("after", "after", "text")] + [Column(name, label) for name, label in zip(view.columns, view.labels)]
    rows = [{"after": label, **dict(zip(view.columns, values))} for label, values in zip(view.rows, view.values)]
    return (
        '<p class="muted">Paper-compatible matrix (%): the same answers scored by each task\'s paper-compatible '
        "scorer (in brackets), which reproduces its paper's evaluation script; the figures and metrics above use "
        "mcit's scorers. &ldquo;-&rdquo;: no paper scorer.</p>\n" + table_html(Table(columns, rows)) + "\n"
    )


def _conventions() -> str:
    """Each comparison metric's convention (a[k][i]: score on task i after task k, 1-indexed; b[i]: zero-shot)."""
    items = "".join(f"<li>{_e(title)}: <code>{_e(CONVENTIONS[key])}</code></li>" for key, title in METRICS.items() if key in CONVENTIONS)
    return f'<ul class="muted">{items}</ul>'


def _groups_section(groups: Table | None) -> list[str]:
    if groups is None:
        return []
    return [
        "<h2>Method groups (sweeps)</h2>",
        ('<p class="muted">The cells of one method in the sweeps, complete cells only (an unfinished cell is left out '
         "until it finishes). Points: the mean and the half-width of the 95% Student-t confidence interval "
         "(t<sub>0.975, n&minus;1</sub> &times; s / &radic;n) over seeds, each seed's value the mean over its orders, and "
         "over orders, each order's value the mean over seeds; n counts the seeds (orders) with a value. "
         "&ldquo;-&rdquo; as the interval: n = 1, and one value gives no interval.</p>"),
        table_html(groups),
    ]


def render_page(
    runs: list[Run], figures: dict[str, RunFigures], comparison: Table, cost: Table, environment: Table,
    groups: Table | None = None, glance: str = "", config_diff: bool = False,
) -> str:
    """The whole page as a string (``groups``: the group table of the sweeps among the runs, if any;
    ``glance``: the "At a glance" section's HTML; ``config_diff``: whether ``config_diff.csv`` was written)."""
    listed = {**EXPORTS, **(DIFF_EXPORTS if config_diff else {}), **(GROUP_EXPORTS if groups is not None else {})}
    exports = "\n".join(f'<li><a href="{_e(name)}">{_e(name)}</a>: {_e(what)}</li>' for name, what in listed.items())
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head>\n<meta charset="utf-8">\n<title>mcit report</title>',
        f"<style>{_CSS}</style>\n</head>\n<body>",
        f"<h1>mcit report: {len(runs)} run{'s' if len(runs) != 1 else ''}</h1>",
        _run_list(runs),
        glance,
        *_groups_section(groups),
        "<h2>Method comparison</h2>",
        ('<p class="muted">Points (100 &times; the score): final average accuracy (MFN), mean fine-tune accuracy (MFT), '
        "mean average accuracy (MAA), the column-wise Avg, average forgetting in two conventions, backward and forward "
        "transfer (BWT, FWT); for pool runs LAMP's forgetting rate (%, over skills and steps); for eval-only tasks (*) "
        "the drop from their zero-shot score after the last step. &ldquo;-&rdquo;: undefined, unavailable (a run that "
        "evaluated only the tasks seen so far has no FWT), or not a metric of that run's scenario. Conventions, with "
        "a[k][i] the score on task i after task k (1-indexed, T tasks) and b[i] the zero-shot score:</p>"),
        _conventions(),
        table_html(comparison),
        "<h2>Cost</h2>",
        ('<p class="muted">Seconds summed over the steps done (the base stage not included); evaluation includes the '
        "zero-shot evaluation. Strategy state: the bytes of the strategy's tensors and JSON in the newest task "
        "checkpoint; the whole directory also holds the trainable weights and, unless save_models is off, the model "
        "in its standard form.</p>"),
        table_html(cost),
        "<h2>Environment</h2>",
        table_html(environment),
        "<h2>Runs</h2>",
        *[_run_section(run, figures[run.name]) for run in runs],
        *image_check_section(runs),
        "<h2>Exports</h2>",
        f"<ul>\n{exports}\n</ul>",
        "</body>\n</html>\n",
    ]
    return "\n".join(parts)


def image_check_section(runs: list[Run]) -> list[str]:
    """The page's section: each run's image check; nothing when no run has one."""
    checked = [run for run in runs if run.image_check is not None]
    if not checked:
        return []
    parts = [
        "<h2>Is the image needed?</h2>",
        ('<p class="muted">The model of <code>mcit data check --model</code> (usually the base model) scored on each '
         "evaluation set with its images (real), with every image replaced by a blank one of the same size, and with "
         "every sample shown another sample's image (shuffled); points. A task is flagged when the real score exceeds "
         "the blank or the shuffled one by less than the threshold (drop: the smaller of the two): the model answers it "
         "without its images, so it measures little of vision-language learning.</p>"),
    ]  # fmt: skip
    columns = [Column(key, key, "text" if key in ("task", "flag") else "points") for key in IMAGE_CHECK_COLUMNS]
    for run in checked:
        check = run.image_check
        parts.append(f"<h3>{_e(run.name)}</h3>")
        if "error" in check:
            parts.append(f'<p class="note">{_e(check["error"])}</p>')
            continue
        parts += [f'<p class="muted">{_e(image_check_summary(check))}</p>', table_html(Table(columns, image_check_rows(check)))]
        parts += [f'<p class="{"note" if flagged else "muted"}">{_e(line)}</p>' for flagged, line in image_check_notes(check)]
        missing = [str(t.get("task")) for t in check["tasks"] if t.get("task") not in matrix_view(run.results).columns]
        if missing:
            parts.append(f'<p class="muted">Not columns of this run (the check was of another config): {_e(", ".join(missing))}</p>')
    return parts
