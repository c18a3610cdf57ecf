"""LAMP's relative gain across the runs of a report: each pool run against the sequential run of its seed.

Relative gain needs each skill's upper bound UB_s, the best score of skill s seen in the
*sequential* run (METHODS.md): a pool run whose selector is ``sequential`` (the newest
dataset only) and whose method is plain ``seqft``. A run can only be compared with the
sequential run of the same seed and the same datasets in the same order, so the report
computes the gain wherever such a run is among its runs (a sweep's cells included), and
leaves it out elsewhere. Skills whose bound is 0 have no ratio; they are left out of the
mean and named (``relative_gain_skipped``).
"""

from __future__ import annotations

from typing import Any

from mcit import metrics
from mcit.report.runs import Run

GAIN = "relative_gain"  # stored as a fraction beside the run's metrics, shown in points like them
SKIPPED = "relative_gain_skipped"


def _key(run: Run) -> tuple[Any, ...] | None:
    """What a run and its sequential reference must share: the seed and the datasets in order."""
    seed = run.config.get("seed")
    if not run.pool or seed is None:
        return None
    return seed, tuple(run.results.get("datasets") or ())


def is_sequential(run: Run) -> bool:
    """The reference of relative gain: a complete pool run of the ``sequential`` selector with plain seqft."""
    selector = ((run.config.get("pool") or {}).get("selector") or {}).get("name")
    return run.pool and run.results.get("complete") is True and selector == "sequential" and run.results.get("methods") == ["seqft"]


def add_relative_gains(runs: list[Run]) -> None:
    """Put ``relative_gain`` (and any skipped skills) into the metrics of each pool run that has a reference.

    Only the in-memory results change (a report never writes a run directory).
    """
    references = {
        _key(run): metrics.upper_bounds(run.results.get("skills") or [], run.results.get("rows") or [])
        for run in runs if is_sequential(run)
    }
    for run in runs:
        bounds = references.get(_key(run))
        rows = run.results.get("rows") or []
        if bounds is None or not rows:
            continue
        final = {skill: rows[-1]["scores"][skill] for skill in run.results.get("skills") or []}
        gain = metrics.relative_gain(final, bounds)
        run.results.setdefault("metrics", {})[GAIN] = gain.percent / 100
        if gain.skipped_skills:
            run.results["metrics"][SKIPPED] = list(gain.skipped_skills)
