"""Splitting a sample budget over groups (clusters, score bins) that may be too small.

Both splitters are water-filling: a group that cannot use its share is taken whole and
what it leaves is shared among the others, so the result always sums to
``min(budget, sum(sizes))`` and never exceeds a group's size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _check(sizes: Sequence[int], budget: int) -> np.ndarray:
    sizes_array = np.asarray(sizes, dtype=np.int64).reshape(-1)
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    if (sizes_array < 0).any():
        raise ValueError(f"group sizes must be >= 0, got {sizes_array.min()}")
    return sizes_array


def split_budget(sizes: Sequence[int], budget: int) -> list[int]:
    """Split ``budget`` evenly over groups, re-splitting what small groups cannot use.

    Groups are visited in ascending size order (ties: lower index first). A group whose
    size is at most the current even share ``remaining_budget / remaining_groups`` is taken
    whole and leaves the rest to be re-split; the first group larger than its share stops
    the scan and every group from there on gets ``floor(share)``. The ``remaining_budget
    % remaining_groups`` leftover samples go one each to the largest of those groups (ties:
    lower index first), which always have room because each is larger than the share.

    Example: sizes ``[2, 10, 10]`` with budget 12 give ``[2, 5, 5]``.

    Args:
        sizes: Number of samples in each group.
        budget: Total number of samples to take.

    Returns:
        Per-group counts, with ``0 <= count_i <= sizes[i]`` and
        ``sum == min(budget, sum(sizes))``.

    Raises:
        ValueError: If ``budget`` or a size is negative.
    """
    sizes_array = _check(sizes, budget)
    counts = sizes_array.copy()
    if budget >= sizes_array.sum():
        return counts.tolist()
    ascending = np.argsort(sizes_array, kind="stable")
    remaining_budget, remaining_groups = int(budget), len(sizes_array)
    for position, group in enumerate(ascending):
        size = int(sizes_array[group])
        # size <= remaining_budget / remaining_groups, in integers to avoid rounding
        if size * remaining_groups <= remaining_budget:
            remaining_budget -= size
            remaining_groups -= 1
            continue
        rest = ascending[position:]
        share, leftover = divmod(remaining_budget, remaining_groups)
        counts[rest] = share
        # Largest first, ties to the lower index: sort by (-size, index).
        by_size = rest[np.lexsort((rest, -sizes_array[rest]))]
        counts[by_size[:leftover]] += 1
        break
    return counts.tolist()


def split_budget_weighted(sizes: Sequence[int], weights: Sequence[float], budget: int) -> list[int]:
    """Split ``budget`` in proportion to ``weights``, capped at each group's size.

    Groups whose proportional share reaches their size are taken whole and the rest of the
    budget is re-split over the others by their weights, until no share exceeds its group.
    Fractional shares are floored and the leftover samples go to the largest fractional
    parts (ties: lower index first), as in the largest-remainder method. Groups with zero
    weight get samples only when the positive-weight groups are exhausted; if every
    remaining weight is zero the rest is split evenly with :func:`split_budget`.

    Args:
        sizes: Number of samples in each group.
        weights: Non-negative, finite weight of each group (need not sum to one).
        budget: Total number of samples to take.

    Returns:
        Per-group counts, with ``0 <= count_i <= sizes[i]`` and
        ``sum == min(budget, sum(sizes))``.

    Raises:
        ValueError: On negative inputs, non-finite weights or mismatched lengths.
    """
    sizes_array = _check(sizes, budget)
    weight_array = np.asarray(weights, dtype=np.float64).reshape(-1)
    if weight_array.shape != sizes_array.shape:
        raise ValueError(f"got {len(weight_array)} weights for {len(sizes_array)} groups")
    if not np.isfinite(weight_array).all() or (weight_array < 0).any():
        raise ValueError("weights must be finite and >= 0")
    counts = np.zeros_like(sizes_array)
    remaining = int(min(budget, sizes_array.sum()))
    active = (sizes_array > 0) & (weight_array > 0)
    while remaining > 0 and active.any():
        total = weight_array[active].sum()
        ideal = np.zeros(len(sizes_array))
        ideal[active] = remaining * weight_array[active] / total
        full = active & (sizes_array - counts <= ideal)
        if full.any():
            # Taking these whole can only raise the others' shares; go round again.
            remaining -= int((sizes_array[full] - counts[full]).sum())
            counts[full] = sizes_array[full]
            active &= ~full
            continue
        floors = np.floor(ideal).astype(np.int64)
        floors = np.minimum(floors, sizes_array - counts)
        counts += floors
        remaining -= int(floors.sum())
        fraction = ideal - np.floor(ideal)
        order = np.lexsort((np.arange(len(sizes_array)), -fraction))
        for group in order:
            if remaining == 0:
                break
            if active[group] and counts[group] < sizes_array[group]:
                counts[group] += 1
                remaining -= 1
        active &= counts < sizes_array
    if remaining > 0:
        # Only zero-weight groups (or rounding leftovers) can still take samples.
        room = sizes_array - counts
        counts += np.asarray(split_budget(room.tolist(), remaining), dtype=np.int64)
    return counts.tolist()
