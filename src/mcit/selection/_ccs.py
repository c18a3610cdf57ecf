"""Coverage-centric selection (CCS): stratified sampling over the range of one score.

METHODS.md, data selection step 6: drop the top and bottom ``trim`` fraction of the score,
cut the remaining range into equal-width bins, give every bin an equal quota (bins with
fewer samples than their quota are taken whole and the deficit is re-split over the
others), and sample uniformly at random inside each bin.
"""

from __future__ import annotations

import numpy as np

from mcit.selection._budget import split_budget


def trim_by_rank(values: np.ndarray, trim: float) -> tuple[np.ndarray, np.ndarray]:
    """Split positions of ``values`` into kept and trimmed by rank.

    ``floor(trim * len(values))`` positions are trimmed at each end. Trimming by rank, not
    by a value threshold, trims exactly that many even when scores tie; ties are ordered by
    position (a stable sort), so the result is deterministic.

    Args:
        values: 1-D array of finite values.
        trim: Fraction trimmed at each end, in ``[0, 0.5)``.

    Returns:
        ``(kept, trimmed)``: positions into ``values``, each sorted ascending.
    """
    if not 0.0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim}")
    order = np.argsort(values, kind="stable")
    cut = int(np.floor(trim * len(values)))
    kept = np.sort(order[cut : len(values) - cut])
    trimmed = np.sort(np.concatenate([order[:cut], order[len(values) - cut :]]))
    return kept, trimmed


def bin_of(values: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bin index in ``[0, bins)`` of each value over ``[min, max]``.

    The maximum goes into the last bin; if all values are equal they share bin 0.
    """
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(len(values), dtype=np.int64)
    position = (values - low) / (high - low) * bins
    return np.clip(np.floor(position).astype(np.int64), 0, bins - 1)


def _draw(pool: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    if count >= len(pool):
        return pool
    return rng.choice(pool, size=count, replace=False)


def ccs_sample(
    scores: np.ndarray,
    budget: int,
    rng: np.random.Generator,
    bins: int = 50,
    trim: float = 0.05,
) -> np.ndarray:
    """Pick ``min(budget, len(scores))`` positions that cover the range of ``scores``.

    Non-finite scores (NaN, e.g. image grounding of a text-only sample; or +-inf) carry no
    position on the score axis, so they form their own group: it gets
    ``floor(budget * n_nonfinite / n)`` of the budget, drawn uniformly at random, and the
    finite scores get the rest through CCS. If the finite scores left after trimming
    cannot fill their part, the deficit is filled uniformly at random first from the
    trimmed outliers, then from the non-finite group.

    Draws use ``rng`` in a fixed order (bins ascending, then the trimmed fill, then the
    non-finite group), so a seeded generator gives the same indices every time.

    Args:
        scores: 1-D array, one score per sample.
        budget: Number of positions to pick (0 is allowed and picks none).
        rng: Source of randomness.
        bins: Number of equal-width bins over the trimmed range.
        trim: Fraction of the finite scores dropped at each end before binning.

    Returns:
        Sorted, unique ``np.int64`` positions into ``scores``.

    Raises:
        ValueError: If ``scores`` is not 1-D, ``budget < 0``, ``bins < 1`` or ``trim``
            is outside ``[0, 0.5)``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {scores.shape}")
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if not 0.0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim}")
    n = len(scores)
    if budget >= n:
        return np.arange(n, dtype=np.int64)
    finite = np.flatnonzero(np.isfinite(scores))
    nonfinite = np.flatnonzero(~np.isfinite(scores))
    nonfinite_quota = budget * len(nonfinite) // n
    finite_quota = budget - nonfinite_quota

    kept, trimmed = trim_by_rank(scores[finite], trim)
    kept, trimmed = finite[kept], finite[trimmed]
    picked: list[np.ndarray] = []
    if len(kept):
        bin_index = bin_of(scores[kept], bins)
        order = np.argsort(bin_index, kind="stable")
        sizes = np.bincount(bin_index, minlength=bins)
        quotas = split_budget(sizes.tolist(), min(finite_quota, len(kept)))
        starts = np.concatenate([[0], np.cumsum(sizes)])
        for b, quota in enumerate(quotas):
            if quota:
                members = kept[order[starts[b] : starts[b + 1]]]
                picked.append(_draw(members, quota, rng))
    deficit = max(0, finite_quota - len(kept))
    if deficit:
        from_trimmed = _draw(trimmed, deficit, rng)
        picked.append(from_trimmed)
        deficit -= len(from_trimmed)
    picked.append(_draw(nonfinite, nonfinite_quota + deficit, rng))
    return np.sort(np.concatenate(picked)).astype(np.int64)
