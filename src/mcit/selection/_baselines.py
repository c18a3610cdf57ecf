"""Baseline selectors over feature vectors: random, SemDeDup, density-based pruning, COINCIDE.

Each returns exactly ``min(budget, n)`` sorted, unique int64 row indices and is
deterministic for a seed. Clustering is :func:`~mcit.selection._clustering.kmeans` (bounded
memory), and similarities are cosines of L2-normalised rows, with cluster centroids taken
as the normalised mean of their members' unit vectors
(:func:`~mcit.selection._clustering.cluster_cosine_stats`).
"""

from __future__ import annotations

import numpy as np

from mcit.selection._budget import split_budget_weighted
from mcit.selection._clustering import check_features, cluster_cosine_stats, kmeans
from mcit.selection._prune import _unit_block, cluster_members, max_cosine_to_earlier


def _check_budget(budget: int) -> None:
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")


def softmax(values: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(values / temperature)``, shifted by the maximum so it cannot overflow."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scaled = np.asarray(values, dtype=np.float64) / temperature
    weights = np.exp(scaled - scaled.max())
    return weights / weights.sum()


def _sample_clusters(members: list[np.ndarray], counts: list[int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picked = [rng.choice(rows, size=count, replace=False) for rows, count in zip(members, counts) if count]
    return np.sort(np.concatenate(picked)).astype(np.int64) if picked else np.empty(0, np.int64)


def _cosine_to(features: np.ndarray, rows: np.ndarray, direction: np.ndarray, chunk: int) -> np.ndarray:
    parts = [_unit_block(features, rows, start, start + chunk) @ direction for start in range(0, len(rows), chunk)]
    return np.concatenate(parts).astype(np.float64)


def semdedup(
    features: np.ndarray,
    budget: int,
    seed: int,
    *,
    k: int = 50,
    eps: float | None = None,
    chunk: int = 1024,
    backend: str = "auto",
) -> np.ndarray:
    """SemDeDup (Abbas et al. 2023): drop semantic near-duplicates inside k-means clusters.

    Within each cluster, rows are ordered by cosine to the cluster centroid, farthest first
    (the paper keeps the least prototypical copy), and each row's redundancy is its max
    cosine to a row earlier in that order. A row is a duplicate when that exceeds
    ``1 - eps``.

    With ``eps=None`` (default) the threshold is chosen so the result meets the budget
    exactly: the ``n - budget`` most redundant rows over all clusters are dropped (ties:
    the higher row index first). With a given ``eps`` the duplicates are dropped, then the
    result is trimmed or filled uniformly at random (seeded) to exactly the budget.

    Args:
        features: ``(n, dim)`` embeddings or memmap.
        budget: Rows to return.
        seed: Seeds the clustering and any random fill/trim.
        k: Number of k-means clusters (clamped to n).
        eps: Duplicate threshold, or ``None`` to fit the budget.
        chunk: Block size for the similarity computation.
        backend: k-means backend (see :func:`~mcit.selection._clustering.kmeans`).

    Returns:
        Sorted int64 row indices.
    """
    n, _ = check_features(features)
    _check_budget(budget)
    if budget >= n:
        return np.arange(n, dtype=np.int64)
    labels, _, _ = kmeans(features, k, seed, backend=backend, chunk=chunk)
    directions, _ = cluster_cosine_stats(features, labels, int(labels.max()) + 1, chunk)
    redundancy = np.empty(n, dtype=np.float64)
    present, members = cluster_members(labels)
    for label, rows in zip(present, members):
        farthest_first = rows[np.argsort(_cosine_to(features, rows, directions[label], chunk), kind="stable")]
        redundancy[farthest_first] = max_cosine_to_earlier(features, chunk, rows=farthest_first)
    if eps is None:
        drop = np.lexsort((-np.arange(n), -redundancy))[: n - budget]
        keep = np.ones(n, dtype=bool)
        keep[drop] = False
        return np.flatnonzero(keep).astype(np.int64)
    rng = np.random.default_rng(seed)
    kept = np.flatnonzero(redundancy <= 1.0 - eps)
    if len(kept) > budget:
        kept = rng.choice(kept, size=budget, replace=False)
    elif len(kept) < budget:
        dropped = np.flatnonzero(redundancy > 1.0 - eps)
        kept = np.concatenate([kept, rng.choice(dropped, size=budget - len(kept), replace=False)])
    return np.sort(kept).astype(np.int64)


def _nearest_other(directions: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Cosine distance of each direction to its nearest other direction (k x k in blocks)."""
    nearest = np.empty(len(directions))
    for start in range(0, len(directions), chunk):
        similarity = directions[start : start + chunk] @ directions.T
        similarity[np.arange(len(similarity)), np.arange(start, start + len(similarity))] = -np.inf
        nearest[start : start + chunk] = 1.0 - similarity.max(axis=1)
    return nearest


def dbp_complexity(directions: np.ndarray, density: np.ndarray) -> np.ndarray:
    """Density-based pruning complexity of each cluster: ``d_intra * d_inter``.

    ``d_intra = 1 - density`` is the mean cosine distance of the members to their centroid
    and ``d_inter`` the cosine distance from the centroid to the nearest other centroid.
    Pass only non-empty clusters; a lone cluster gets ``d_inter = 1``.
    """
    d_inter = _nearest_other(directions) if len(directions) > 1 else np.ones(len(directions))
    return np.clip(1.0 - density, 0.0, None) * np.clip(d_inter, 0.0, None)


def density_select(
    features: np.ndarray,
    budget: int,
    seed: int,
    *,
    k: int = 50,
    temperature: float = 0.1,
    chunk: int = 1024,
    backend: str = "auto",
) -> np.ndarray:
    """Density-based pruning (DBP, Abbas et al. 2024): more budget to complex clusters.

    Per-cluster budget is proportional to ``softmax(complexity / temperature)``
    (:func:`dbp_complexity`), capped at cluster size with the excess re-split
    (:func:`~mcit.selection._budget.split_budget_weighted`); rows are drawn uniformly at
    random inside each cluster. ``temperature=0.1`` is our default.
    """
    check_features(features)
    _check_budget(budget)
    labels, _, _ = kmeans(features, k, seed, backend=backend, chunk=chunk)
    present, members = cluster_members(labels)
    directions, density = cluster_cosine_stats(features, labels, int(labels.max()) + 1, chunk)
    weights = softmax(dbp_complexity(directions[present], density[present]), temperature)
    counts = split_budget_weighted([len(rows) for rows in members], weights, budget)
    return _sample_clusters(members, counts, seed)


def coincide_select(
    features: np.ndarray,
    budget: int,
    seed: int,
    *,
    k: int = 100,
    temperature: float = 0.1,
    chunk: int = 1024,
    backend: str = "auto",
) -> np.ndarray:
    """COINCIDE-style selection (Lee et al. 2024): favour transferable, sparse clusters.

    Many k-means clusters of (hidden-state) features; per cluster, density ``D`` = mean
    cosine of members to the centroid and transitivity ``T`` = mean cosine of the centroid
    to the other centroids. The budget is split in proportion to
    ``softmax((T / D) / temperature)``, capped at cluster size with the excess re-split,
    and rows are drawn uniformly at random inside each cluster (the paper selects within a
    cluster by MMD; random is our simplification). ``D`` is floored at 1e-6 so a cluster
    of opposite vectors cannot divide by zero. ``k=100`` and ``temperature=0.1`` are ours.
    """
    check_features(features)
    _check_budget(budget)
    labels, _, _ = kmeans(features, k, seed, backend=backend, chunk=chunk)
    present, members = cluster_members(labels)
    directions, density = cluster_cosine_stats(features, labels, int(labels.max()) + 1, chunk)
    directions, density = directions[present], density[present]
    if len(present) > 1:
        # mean over c' != c of <d_c, d_c'> = (<d_c, sum of all d> - <d_c, d_c>) / (K - 1)
        total = directions.sum(axis=0)
        transitivity = (directions @ total - (directions**2).sum(axis=1)) / (len(present) - 1)
    else:
        transitivity = np.zeros(1)
    weights = softmax(transitivity / np.maximum(density, 1e-6), temperature)
    counts = split_budget_weighted([len(rows) for rows in members], weights, budget)
    return _sample_clusters(members, counts, seed)
