"""docs/claims.md from the stored runs: one row per claim, then the figures of every cell behind the rows.

Only complete cells count, and a seed counts for a figure only when every cell the figure reads
is complete. The notes at the end of an existing file (below :data:`NOTES`) are kept, so what
explains a verdict can be written by hand and survives regeneration.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from claims import figures as f
from claims.catalogue import Claim
from claims.execute import RECORD, read_json
from claims.plan import GROUPS, Cell
from claims.verdicts import UNDEFINED, Interval, combine, interval

NOTES = "## Notes"
PAPERS = {
    "DGG": "DGG (Li et al., CVPR 2026, arXiv 2511.15164)",
    "He et al.": "He et al. 2023, *Continual Instruction Tuning for Large Multimodal Models* (arXiv 2311.16206)",
    "Srivastava et al.": "Srivastava et al., *Improving Multimodal Large Language Models Using Continual Learning* (CoLLAs 2025)",
    "LAMP": "LAMP / Adapt-∞ (Maharana et al., arXiv 2410.10636)",
}


class Store:
    """The complete cells' results under ``out``, read once each."""

    def __init__(self, out: Path, quick: bool = False):
        self.out, self.quick = out, quick
        self._cache: dict[Cell, dict[str, Any] | None] = {}

    def results(self, cell: Cell) -> dict[str, Any] | None:
        if cell not in self._cache:
            found = read_json(cell.directory(self.out) / "results.json")
            self._cache[cell] = found if found is not None and found.get("complete") is True else None
        return self._cache[cell]

    def commit(self, cell: Cell) -> str:
        record = cell.directory(self.out) / RECORD
        return json.loads(record.read_text()).get("commit", "unrecorded") if record.is_file() else "unrecorded"


@dataclass
class Row:
    claim: Claim
    found: list[Interval]
    verdicts: list[str]
    verdict: str
    commits: Counter


def measure(claim: Claim, store: Store, seeds: list[int]) -> Row:
    """Each figure's interval over the seeds whose cells are complete, each check's verdict, and the claim's."""
    found, verdicts, commits = [], [], Counter()
    for figure in claim.figures:
        values = []
        for seed in seeds:
            cells = [Cell(group, label, seed) for group, label in figure.cells]
            if any(store.results(cell) is None for cell in cells):
                continue
            runs = lambda group, label, seed=seed: store.results(Cell(group, label, seed))
            dirs = lambda group, label, seed=seed: Cell(group, label, seed).directory(store.out)
            values.append(figure.value(runs, dirs))
            commits.update(store.commit(cell) for cell in cells)
        found.append(interval(values))
        verdicts.append(UNDEFINED if values and found[-1].n == 0 else figure.check.verdict(found[-1]))
    return Row(claim, found, verdicts, combine(verdicts), commits)


def _commit_text(commits: Counter) -> str:
    if not commits:
        return "-"
    if len(commits) == 1:
        return f"`{next(iter(commits))}`"
    return ", ".join(f"`{commit}` ({count} cell-seeds)" for commit, count in commits.most_common())


def claim_rows(rows: list[Row], seeds: list[int], out: Path) -> list[str]:
    lines = []
    for paper, title in PAPERS.items():
        mine = [row for row in rows if row.claim.paper == paper]
        if not mine:
            continue
        lines += [f"## {title}", "", "| claim | paper's figure | mcit: mean ± 95% interval over seeds (n) | verdict | command | commit |", "|---|---|---|---|---|---|"]
        for row in mine:
            measured = "<br>".join(
                f"{figure.text}: **{found.text()}**, claim {figure.check.describe()}: {verdict}"
                for figure, found, verdict in zip(row.claim.figures, row.found, row.verdicts)
            )
            command = f"`.venv/bin/python experiments/seed_claims.py --claims {row.claim.name} --seeds {','.join(map(str, seeds))} --out {out}`"
            lines.append(
                f"| **{row.claim.name}**: {row.claim.statement} | {row.claim.paper_figure} | {measured} | **{row.verdict}** | {command} | {_commit_text(row.commits)} |"
            )
        lines.append("")
    return lines


STREAM_COLUMNS = {
    "final acc": f.final, "MFT": f.learned, "forgetting": f.forgetting, "language drop": f.language_drop,
    "NLU drop": lambda r: f.language_drop(r, "nlu"), "NLG drop": lambda r: f.language_drop(r, "nlg"),
    "language Δ (harmonic)": f.language_headline, "added parameters": f.added_parameters,
}
RARE = {"lamp-closed": "code", "lamp-open": "plural"}


def _pool_columns(group: str) -> dict[str, Any]:
    rare = RARE[group]
    return {
        "relative gain": lambda r, seq, d: float("nan") if seq is None else f.relative_gain(r, seq), "forgetting rate": lambda r, seq, d: f.forgetting_rate(r),
        "average accuracy": lambda r, seq, d: f.pool_average(r), f"{rare} final": lambda r, seq, d: f.skill_final(r, rare),
        f"{rare} share of selections (%)": lambda r, seq, d: f.skill_share(d, rare),
        f"last step's clusters led by {rare}": lambda r, seq, d: f.clusters_led_by(d, rare),
    }


def cell_tables(store: Store, seeds: list[int], cells: list[tuple[str, str]]) -> list[str]:
    """Per group, the figures of each of ``cells`` (mean ± 95% interval over the seeds it completed), points."""
    explained = (
        "Every cell's own figures, mean ± 95% interval over the seeds it completed (points; language drop: the plain "
        "mean of the five text-only skills' drops from the base model, NLU/NLG the same per kind; language Δ: "
        "Srivastava et al.'s harmonic-mean headline)."
    )
    lines = ["## The runs behind the rows", "", explained, ""]
    for name in [name for name in GROUPS if any(group == name for group, _ in cells)]:
        group = GROUPS[name]
        labels = [label for label in group.cells if (name, label) in cells]
        pool = name in RARE
        columns = _pool_columns(name) if pool else STREAM_COLUMNS
        lines += [f"### `{name}`: {group.title}", "", "| cell | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        for label in labels:
            values: dict[str, list[float]] = {column: [] for column in columns}
            for seed in seeds:
                results = store.results(Cell(name, label, seed))
                sequential = store.results(Cell(name, "sequential", seed)) if pool else None
                if results is None:
                    continue
                for column, read in columns.items():
                    values[column].append(read(results, sequential, Cell(name, label, seed).directory(store.out)) if pool else read(results))
            formatted = [_format(column, values[column]) for column in columns]
            lines.append(f"| {label} | " + " | ".join(formatted) + " |")
        lines += ["", "<details><summary>each cell as one <code>mcit run</code> (seed 0; the others differ in seed= and model.name=)</summary>", "", "```bash"]
        lines += [_cell_command(store, Cell(name, label, seeds[0])) for label in labels] + ["```", "", "</details>", ""]
    return lines


def _format(column: str, values: list[float]) -> str:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if column == "added parameters":
        return f"{round(sum(values) / len(values)):,}" if values else "-"
    return interval(values).text()


def _cell_command(store: Store, cell: Cell) -> str:
    from claims.execute import command

    return command(cell, cell.overrides(store.out, store.quick), store.out)


def write(path: Path, rows: list[Row], store: Store, seeds: list[int], cells: list[tuple[str, str]], header: list[str]) -> None:
    """Write the document; keep the notes of the file already there."""
    kept = [NOTES, "", "(Write here what explains a verdict; regenerating the file keeps this section.)", ""]
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        if NOTES in text:
            kept = [NOTES + text.split(NOTES, 1)[1].rstrip("\n"), ""]
    body = header + claim_rows(rows, seeds, store.out) + cell_tables(store, seeds, cells) + kept
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(body), encoding="utf-8")
