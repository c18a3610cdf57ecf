"""Multi-way score choice: per cluster, use the score whose distribution is most spread out.

METHODS.md, data selection step 4: z-normalise each score over the cluster, trim the top
and bottom 5%, histogram into 50 bins on [-4, 4] and keep the score with the highest
Shannon entropy, so CCS stratifies along the axis that separates the cluster's samples best.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from mcit.selection._ccs import trim_by_rank


def histogram_entropy(
    values: np.ndarray,
    bins: int = 50,
    value_range: tuple[float, float] = (-4.0, 4.0),
    trim: float = 0.05,
) -> float:
    """Shannon entropy (bits) of the z-normalised, trimmed histogram of ``values``.

    Non-finite values are ignored. The mean and standard deviation come from all finite
    values; trimming (by rank, see :func:`~mcit.selection._ccs.trim_by_rank`) happens after
    normalising. Values outside ``value_range`` after trimming fall outside the histogram
    and are not counted, as with :func:`numpy.histogram`.

    Args:
        values: 1-D array of scores.
        bins: Number of equal-width bins over ``value_range``.
        value_range: Histogram range in standard deviations.
        trim: Fraction trimmed at each end.

    Returns:
        Entropy in bits, between 0 and ``log2(bins)``. 0 when fewer than two finite values
        exist or they are all equal (a constant score cannot stratify anything).
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = values[np.isfinite(values)]
    if len(finite) < 2:
        return 0.0
    spread = finite.std()
    if not spread > 0:
        return 0.0
    z = (finite - finite.mean()) / spread
    kept, _ = trim_by_rank(z, trim)
    counts, _ = np.histogram(z[kept], bins=bins, range=value_range)
    total = counts.sum()
    if total == 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


def choose_score(
    scores: Mapping[str, np.ndarray],
    *,
    bins: int = 50,
    value_range: tuple[float, float] = (-4.0, 4.0),
    trim: float = 0.05,
    min_finite: int = 2,
    min_finite_fraction: float = 0.5,
) -> str:
    """Name of the score with the highest :func:`histogram_entropy` over one cluster.

    A score is skipped when it has fewer finite values than
    ``max(min_finite, ceil(min_finite_fraction * n))``: a score that is missing for most of
    the cluster (image grounding in a mostly text-only cluster) would stratify only the
    few samples it covers. If every score is skipped, the one with the most finite values
    wins. Ties (equal entropy or equal finite count) go to the name that sorts first.

    Args:
        scores: Score name -> 1-D array over the cluster's samples (all the same length).
        bins: Passed to :func:`histogram_entropy`.
        value_range: Passed to :func:`histogram_entropy`.
        trim: Passed to :func:`histogram_entropy`.
        min_finite: Minimum number of finite values for a score to take part.
        min_finite_fraction: Minimum fraction of finite values for a score to take part.

    Returns:
        The chosen score name.

    Raises:
        ValueError: If ``scores`` is empty or the arrays differ in length.
    """
    if not scores:
        raise ValueError("choose_score needs at least one score")
    names = sorted(scores)
    lengths = {name: np.asarray(scores[name]).reshape(-1).shape[0] for name in names}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"score arrays differ in length: {lengths}")
    n = lengths[names[0]]
    needed = max(min_finite, math.ceil(min_finite_fraction * n))
    finite_counts = {name: int(np.isfinite(np.asarray(scores[name], dtype=np.float64)).sum()) for name in names}
    eligible = [name for name in names if finite_counts[name] >= needed]
    if not eligible:
        # max() keeps the first of equal values, and names are sorted.
        return max(names, key=lambda name: finite_counts[name])
    entropies = {name: histogram_entropy(scores[name], bins, value_range, trim) for name in eligible}
    return max(eligible, key=lambda name: entropies[name])
