"""LAMP's pool metrics (lifelong instruction tuning): relative gain and forgetting rate.

They read per-skill scores rather than a task matrix, so they are not registered stream
metrics; the pool scenario and the report call them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

_NAN = float("nan")
@dataclass(frozen=True)
class RelativeGain:
    """LAMP's relative gain and the skills it had to leave out.

    Attributes:
        percent: ``mean_s final[s] / UB[s] * 100`` over skills with a non-zero bound
            (``nan`` if there is none).
        skipped_skills: Skills left out because their upper bound is 0 (ratio undefined), sorted.
    """

    percent: float
    skipped_skills: tuple[str, ...]


def upper_bounds(skills: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Relative gain's bound of each skill in LAMP's setting: its best score over the steps of the
    sequential run (``rows``: the run's results rows, each with its ``scores`` by skill)."""
    return {skill: max(row["scores"][skill] for row in rows) for skill in skills}


def relative_gain(final_scores: Mapping[str, float], upper_bounds: Mapping[str, float]) -> RelativeGain:
    """LAMP relative gain: ``mean_s final[s] / UB[s] * 100``, and which skills it skipped.

    A skill whose upper bound is 0 has no defined ratio; it is left out of the mean and
    named in ``skipped_skills``, so a caller can report it rather than lose it silently.

    Args:
        final_scores: Final score of each skill.
        upper_bounds: Upper-bound score of each skill (e.g. single-skill fine-tuning).

    Returns:
        The gain over the skills with a non-zero bound (``nan`` if none) and the skipped skills.

    Raises:
        ValueError: If a skill of ``final_scores`` has no upper bound.
    """
    missing = sorted(set(final_scores) - set(upper_bounds))
    if missing:
        raise ValueError(f"no upper bound for skills: {', '.join(missing)}")
    ratios = [final_scores[s] / upper_bounds[s] * 100 for s in final_scores if upper_bounds[s] != 0]
    skipped = tuple(sorted(s for s in final_scores if upper_bounds[s] == 0))
    return RelativeGain(float(np.mean(ratios)) if ratios else _NAN, skipped)


def forgetting_rate(history: Sequence[Mapping[str, float]]) -> float:
    """LAMP forgetting rate over a sequence of per-skill scores.

    ``1/(S T) sum_{s, t>=1} |min(P_s^t - P_s^{t-1}, 0)| / P_s^{t-1} * 100`` where
    ``history[t][s] = P_s^t``: the mean over every (skill, step) pair. Only drops count,
    so a gain contributes 0, and so does a pair with ``P_s^{t-1} == 0`` (a score of 0
    cannot drop); leaving such pairs out of the mean would inflate it. A skill absent from
    either of two consecutive steps forms no pair there.

    Args:
        history: Per-step mapping from skill name to a non-negative score.

    Returns:
        The forgetting rate in percent, or ``nan`` when there is no pair (e.g. fewer than
        two steps).

    Raises:
        ValueError: If a score is negative or not finite.
    """
    rates = []
    for step in history:
        if any(not math.isfinite(v) or v < 0 for v in step.values()):
            raise ValueError(f"forgetting rate needs finite non-negative scores, got {dict(step)}")
    for prev, cur in itertools.pairwise(history):
        for s in prev:
            if s in cur:
                drop = max(prev[s] - cur[s], 0.0)
                rates.append(drop / prev[s] * 100 if drop > 0 else 0.0)
    return float(np.mean(rates)) if rates else _NAN


