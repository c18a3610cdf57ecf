"""The four papers' claims (DGG, He et al., LAMP, Srivastava et al.) measured over seeds: docs/claims.md.

Usage: .venv/bin/python experiments/seed_claims.py [--seeds 0,1,2,3,4] [--claims NAME[,NAME...]]
       [--jobs N] [--out runs/claims] [--doc docs/claims.md] [--quick] [--report-only] [--list]

Runs every cell the chosen claims need (claims/plan.py: one ``mcit run`` each, one torch thread,
``OUT/seed<S>/<group>/<label>``), then writes the document: one row per claim with the paper's
figure, mcit's figure as mean ± 95% Student-t interval over the seeds (n in the row), the
verdict by the rule of claims/verdicts.py, the row's command and the commit its cells were
measured at. Everything resumes: a complete cell is read, not rerun; a stopped cell goes on
after its last finished task. ``--report-only`` writes the document from the finished cells and
runs nothing. ``--claims`` takes claim names or their prefixes (``dgg``, ``he``, ``lamp``,
``srivastava``); ``--list`` prints them. ``--quick`` runs tiny streams (two seeds by
default) into runs/claims-quick and writes OUT/claims.md: a check of the machinery, not a
measurement.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: every cell runs on one thread

import argparse
import sys
import time
from pathlib import Path

from claims.catalogue import CLAIMS, Claim
from claims.document import Store, measure, write
from claims.execute import commit_id, run_cells
from claims.plan import cells_for
from claims.verdicts import NEGLIGIBLE


def chosen_claims(names: str | None) -> list[Claim]:
    """The claims named (or prefixed: ``dgg`` takes every ``dgg-...``); all without names."""
    if not names:
        return list(CLAIMS)
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    chosen = [c for c in CLAIMS if any(c.name == w or c.name.startswith(w + "-") for w in wanted)]
    unknown = [w for w in wanted if not any(c.name == w or c.name.startswith(w + "-") for c in CLAIMS)]
    if unknown:
        sys.exit(f"error: unknown claim {unknown[0]!r}; valid: {', '.join(c.name for c in CLAIMS)}")
    return chosen


def header(seeds: list[int], out: Path, quick: bool, complete: int, total: int) -> list[str]:
    """The document's opening: where the runs are, how far the measurement got, how a verdict is read."""
    quick_note = " (--quick: tiny streams, a check of the machinery, not a measurement)" if quick else ""
    source = (
        f"Written by `experiments/seed_claims.py` from the runs under `{out}`{quick_note}; regenerate it with "
        f"`.venv/bin/python experiments/seed_claims.py --report-only`. Seeds {', '.join(map(str, seeds))}; the tree "
        f"was at `{commit_id()}` when this file was written; each row names the commit its runs were measured at."
    )
    progress = f"**Complete cells: {complete} of {total}.**" + (
        "" if complete else " Nothing is measured yet: `.venv/bin/python experiments/seed_claims.py --jobs 2` runs it all."
    )
    rule = (
        "**How a verdict is read.** Each claim is one or more checks of a figure computed per seed, a paired "
        "difference where it compares two methods (both from that seed's base model). The row gives the mean and the "
        "half-width of the 95% Student-t interval over the seeds whose runs are complete, and n. A claim that "
        'something is larger ("A beats B", "X hurts") is **reproduced** when the whole interval is above 0, '
        f"**not reproduced** when the whole interval is below {NEGLIGIBLE:g} point (0.25 for LAMP's forgetting-rate "
        "and selection-share differences, whose paper values are about 1%): no effect worth claiming, or the other "
        'sign; **inconclusive at this n** otherwise. A claim that something is small ("close to joint", "at a small '
        'cost") is reproduced when the whole interval is below its margin (5 points), not reproduced when the whole '
        "interval is above it. A row of several checks is reproduced when all are, not reproduced when one is not."
    )
    units = (
        "All figures are in points (accuracy, forgetting, drops in %; LAMP's relative gain and forgetting rate in %). "
        "Final accuracy is the mean final score over the stream's tasks (DGG's FAA: the test sets are equal). "
        "Where a paper's numbers were not at hand (docs METHODS.md, the abstracts), the paper's-figure column "
        "states its finding in words."
    )
    return ["# The four papers' claims, measured over seeds", "", source, "", progress, "", rule, "", units, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default=None, help="comma-separated (default 0,1,2,3,4; --quick: 0,1)")
    parser.add_argument("--claims", default=None, help="claim names or prefixes, comma-separated (default: all)")
    parser.add_argument("--jobs", type=int, default=1, help="cells run at once, each on one torch thread")
    parser.add_argument("--out", type=Path, default=None, help="run directories (default runs/claims; --quick: runs/claims-quick)")
    parser.add_argument("--doc", type=Path, default=None, help="the document (default docs/claims.md; --quick: OUT/claims.md)")
    parser.add_argument("--quick", action="store_true", help="tiny streams, two seeds: checks the machinery, measures nothing")
    parser.add_argument("--report-only", action="store_true", help="write the document from the finished runs; run nothing")
    parser.add_argument("--list", action="store_true", help="print the claims and the cells each needs, and exit")
    args = parser.parse_args()
    claims = chosen_claims(args.claims)
    if args.list:
        for claim in claims:
            print(f"{claim.name}: {claim.statement} [{', '.join('/'.join(c) for c in sorted(claim.cells()))}]")
        return
    seeds = [int(s) for s in (args.seeds or ("0,1" if args.quick else "0,1,2,3,4")).split(",")]
    out = args.out or Path("runs/claims-quick" if args.quick else "runs/claims")
    doc = args.doc or (out / "claims.md" if args.quick else Path("docs/claims.md"))
    needed = set().union(*(claim.cells() for claim in claims))
    cells = cells_for(needed, seeds)
    failed = []
    if not args.report_only:
        start = time.perf_counter()
        failed = run_cells(cells, out, args.quick, max(args.jobs, 1))
        print(f"cells done in {time.perf_counter() - start:.0f} s; {len(failed)} failed", flush=True)
        for cell, why in failed:
            print(f"failed: {cell.directory(out)}: {why}", file=sys.stderr)
    store = Store(out, args.quick)
    rows = [measure(claim, store, seeds) for claim in claims]
    shown = sorted({(cell.group, cell.label) for cell in cells})
    complete = sum(store.results(cell) is not None for cell in cells)
    write(doc, rows, store, seeds, shown, header(seeds, out, args.quick, complete, len(cells)))
    for row in rows:
        print(f"{row.claim.name}: {row.verdict} ({'; '.join(found.text() for found in row.found)})")
    print(f"wrote {doc}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
