"""Redundancy (max cosine similarity) in blocks, and LITE permanent pool pruning.

Pairwise similarity is O(n^2) work but never O(n^2) memory here: rows are taken
``chunk`` at a time, so the largest temporary is one ``chunk x chunk`` similarity block
plus two ``chunk x dim`` row blocks, whatever the number of rows (METHODS.md, step 7).
"""

from __future__ import annotations

import numpy as np

from mcit.selection._budget import split_budget


def _unit_block(features: np.ndarray, rows: np.ndarray | None, start: int, stop: int) -> np.ndarray:
    """Rows ``start..stop`` (of ``rows`` if given), L2-normalised, float32; zero rows stay zero."""
    if rows is None:
        # A slice of a memmap is a view of the file: copy before normalising in place.
        block = np.array(features[start:stop], dtype=np.float32)
    else:
        block = np.asarray(features[rows[start:stop]], dtype=np.float32)  # fancy indexing copies
    if not np.isfinite(block).all():
        raise ValueError("features hold NaN or inf; redundancy is undefined for them")
    # einsum, unlike np.linalg.norm, makes no temporary copy of the block.
    norms = np.sqrt(np.einsum("ij,ij->i", block, block))[:, None]
    block /= np.where(norms > 0, norms, 1.0)
    return block


def _blocked_max_cosine_to_earlier(features: np.ndarray, rows: np.ndarray | None, chunk: int) -> np.ndarray:
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    count = features.shape[0] if rows is None else len(rows)
    best = np.full(count, -np.inf, dtype=np.float64)
    for b_start in range(0, count, chunk):
        b_stop = min(b_start + chunk, count)
        block_b = _unit_block(features, rows, b_start, b_stop)
        for a_start in range(0, b_start + 1, chunk):
            a_stop = min(a_start + chunk, count)
            block_a = block_b if a_start == b_start else _unit_block(features, rows, a_start, a_stop)
            similarity = block_b @ block_a.T
            if a_start == b_start:  # within one block only strictly earlier rows count
                position = np.arange(len(similarity))
                np.putmask(similarity, position[:, None] <= position[None, :], -np.inf)
            np.maximum(best[b_start:b_stop], similarity.max(axis=1), out=best[b_start:b_stop])
            # Free these before the next pair is loaded, or two generations coexist.
            del similarity, block_a
    return best


def max_cosine_to_earlier(features: np.ndarray, chunk: int = 1024, *, rows: np.ndarray | None = None) -> np.ndarray:
    """For each row, the largest cosine similarity to any earlier row.

    Args:
        features: ``(n, dim)`` matrix or memmap.
        chunk: Rows per block; temporaries are ``chunk^2 + 2 * chunk * dim`` float32.
        rows: Optional row indices: compute over ``features[rows]`` in that order
            ("earlier" then means earlier in ``rows``).

    Returns:
        float64 array aligned with the rows. The first row has no earlier row and gets
        ``-inf``, so it ranks as the least redundant. Zero rows have cosine 0 to everything.

    Raises:
        ValueError: If a row holds NaN or inf, or ``chunk < 1``.
    """
    return _blocked_max_cosine_to_earlier(features, None if rows is None else np.asarray(rows), chunk)


def cluster_members(labels: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Distinct labels and, for each, its row indices in ascending order."""
    labels = np.asarray(labels).reshape(-1)
    present, inverse = np.unique(labels, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=len(present)))])
    return present, [order[bounds[i] : bounds[i + 1]] for i in range(len(present))]


def lite_prune(features: np.ndarray, labels: np.ndarray, pool_budget: int, chunk: int = 1024) -> np.ndarray:
    """LITE: shrink the pool to ``pool_budget`` rows, dropping redundant rows of big clusters.

    Row order is arrival order (old pool first, then the new data), so a sample's
    redundancy is its max cosine similarity to *earlier* samples of its own cluster
    (:func:`max_cosine_to_earlier`): of two near-duplicates the later one is dropped.

    "Large clusters first" is realised as the end state of repeatedly dropping one sample
    from the currently largest cluster: kept counts are
    :func:`~mcit.selection._budget.split_budget` ``(sizes, pool_budget)``, so clusters at or
    below the final level are untouched and every larger cluster is cut to that level
    (the originally largest keep one extra sample when the budget does not divide evenly). Inside a cut
    cluster the most redundant samples are dropped (ties: the later sample first).
    Redundancy is computed once, before any drop, as in SemDeDup. Clusters that keep all
    their rows are skipped, so the O(n_c^2) work is spent only on clusters that shrink.

    Args:
        features: ``(n, dim)`` embeddings (METHODS.md: hidden-state means) or a memmap.
        labels: ``(n,)`` cluster label of every row (any integers).
        pool_budget: Rows to keep.
        chunk: Block size for the similarity computation.

    Returns:
        Sorted int64 indices of the ``min(pool_budget, n)`` kept rows.

    Raises:
        ValueError: If ``pool_budget < 1``, the lengths differ or features are not finite.
    """
    labels = np.asarray(labels).reshape(-1)
    if features.ndim != 2 or len(labels) != features.shape[0]:
        raise ValueError(f"got {len(labels)} labels for features of shape {features.shape}")
    if pool_budget < 1:
        raise ValueError(f"pool_budget must be >= 1, got {pool_budget}")
    n = features.shape[0]
    if pool_budget >= n:
        return np.arange(n, dtype=np.int64)
    _, members = cluster_members(labels)
    keep_counts = split_budget([len(rows) for rows in members], pool_budget)
    kept: list[np.ndarray] = []
    for rows, keep in zip(members, keep_counts):
        if keep == len(rows):
            kept.append(rows)
            continue
        redundancy = max_cosine_to_earlier(features, chunk, rows=rows)
        # Most redundant first; among equals the later position first.
        drop_order = np.lexsort((-np.arange(len(rows)), -redundancy))
        mask = np.ones(len(rows), dtype=bool)
        mask[drop_order[: len(rows) - keep]] = False
        kept.append(rows[mask])
    return np.sort(np.concatenate(kept)).astype(np.int64)
