"""LAMP (Adapt-inf): gradient pseudo-task clusters, multi-way score choice, CCS per cluster.

METHODS.md, data selection: the selector computes per-sample gradient vectors and scores
with the current model (:mod:`mcit.selection._features`); :func:`lamp_select` then works on
those arrays (steps 2, 4, 5 and 6): k-means with k from the WSS elbow, an even (or
density-weighted) budget per cluster, the highest-entropy score per cluster, and
coverage-centric sampling along that score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from mcit.data.sample import Sample
from mcit.selection._baselines import dbp_complexity
from mcit.selection._budget import split_budget, split_budget_weighted
from mcit.selection._ccs import ccs_sample
from mcit.selection._clustering import DEFAULT_K_GRID, check_features, choose_k, cluster_cosine_stats
from mcit.selection._features import GradientFeatureOptions
from mcit.selection._multiway import choose_score
from mcit.selection._pool_features import pool_features
from mcit.selection._prune import cluster_members
from mcit.selection.base import SELECTORS, Selection, SelectionContext, Selector

BUDGET_RULES = ("even", "density")


@dataclass(frozen=True)
class LampSelection:
    """What :func:`lamp_select` chose, and why.

    Attributes:
        indices: Sorted int64 indices of the selected rows.
        cluster_of_index: Cluster label of each selected row (aligned with ``indices``).
        labels: Cluster label of every row in the pool.
        k: Number of clusters used (the elbow's choice, clamped to the pool).
        wss_by_k: Estimated within-cluster sum of squares of each candidate k.
        chosen_score: Cluster -> name of the score CCS used there (non-empty clusters).
        cluster_sizes: Rows per cluster, indexed by label.
        cluster_budgets: Rows selected per cluster, indexed by label.
    """

    indices: np.ndarray
    cluster_of_index: np.ndarray
    labels: np.ndarray
    k: int
    wss_by_k: dict[int, float]
    chosen_score: dict[int, str]
    cluster_sizes: list[int]
    cluster_budgets: list[int]

    def summary(self) -> dict[str, object]:
        """JSON-ready description without the per-row arrays."""
        return {
            "selected": len(self.indices),
            "k": self.k,
            "wss_by_k": {str(k): v for k, v in self.wss_by_k.items()},
            "chosen_score": {str(c): s for c, s in self.chosen_score.items()},
            "cluster_sizes": self.cluster_sizes,
            "cluster_budgets": self.cluster_budgets,
        }


def split_over_clusters(
    vectors: np.ndarray, labels: np.ndarray, k: int, budget: int, rule: str, chunk: int = 1024
) -> list[int]:
    """Per-cluster budgets under ``rule`` (see :func:`lamp_select`)."""
    sizes = np.bincount(labels, minlength=k)[:k]
    if rule == "even":
        return split_budget(sizes.tolist(), budget)
    if rule == "density":
        directions, density = cluster_cosine_stats(vectors, labels, k, chunk)
        present = np.flatnonzero(sizes)
        weights = np.zeros(k)
        weights[present] = dbp_complexity(directions[present], density[present])
        if weights.sum() == 0:
            # All clusters are single points (or exact copies): nothing to weigh by.
            weights[present] = 1.0
        return split_budget_weighted(sizes.tolist(), weights, budget)
    raise ValueError(f"unknown budget rule {rule!r}; valid: {', '.join(BUDGET_RULES)}")


def lamp_select(
    vectors: np.ndarray,
    scores: Mapping[str, np.ndarray],
    budget: int,
    seed: int,
    *,
    k_grid: tuple[int, ...] = DEFAULT_K_GRID,
    bins: int = 50,
    trim: float = 0.05,
    budget_rule: str = "even",
    min_finite_fraction: float = 0.5,
    backend: str = "auto",
    fit_sample: int = 100_000,
    chunk: int = 1024,
    cluster_dim: int | None = 256,
    k_search_restarts: int = 1,
) -> LampSelection:
    """Select ``min(budget, n)`` rows of the pool the LAMP way.

    1. :func:`~mcit.selection._clustering.choose_k` clusters the (already L2-normalised)
       sample vectors into pseudo-tasks, k from ``k_grid`` by the WSS elbow.
    2. The budget is split over clusters: ``"even"`` (METHODS.md step 5,
       :func:`~mcit.selection._budget.split_budget`), or ``"density"``, the paper's
       density-based budget ablation as in the authors' script: budget proportional to the
       DBP complexity of each cluster (mean cosine distance of members to the centroid x
       cosine distance to the nearest other centroid,
       :func:`~mcit.selection._baselines.dbp_complexity`), linear rather than softmax,
       capped at cluster size with the excess re-split.
    3. In each cluster :func:`~mcit.selection._multiway.choose_score` picks the score with
       the most spread-out histogram, and :func:`~mcit.selection._ccs.ccs_sample` draws the
       cluster's budget along it.

    The same seed gives the same selection: it seeds the clustering and one
    ``numpy.random.Generator`` used for CCS in ascending cluster order.

    Args:
        vectors: ``(n, dim)`` sample vectors (matrix or memmap).
        scores: Score name -> ``(n,)`` array; NaN marks a missing score.
        budget: Rows to select (>= 1).
        seed: Random seed.
        k_grid: Candidate numbers of clusters.
        bins: CCS and histogram bins.
        trim: Fraction trimmed at each end of a score, for CCS and the entropy.
        budget_rule: ``"even"`` or ``"density"``.
        min_finite_fraction: See :func:`~mcit.selection._multiway.choose_score`.
        backend: k-means backend (see :func:`~mcit.selection._clustering.kmeans`).
        fit_sample: Most rows k-means is fitted on.
        chunk: Rows per block in the chunked passes.
        cluster_dim: k-means runs on a seeded Gaussian projection of the vectors to this
            many coordinates (``None``: on the vectors themselves); see
            :func:`~mcit.selection._clustering.choose_k`.
        k_search_restarts: k-means restarts per k of the grid search (the chosen k is
            refitted with 3).

    Returns:
        A :class:`LampSelection`.

    Raises:
        ValueError: If ``budget < 1``, no scores are given, a score's length differs
            from the number of vectors, or an option is invalid.
    """
    n, _ = check_features(vectors)
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    if not scores:
        raise ValueError("lamp_select needs at least one score")
    if budget_rule not in BUDGET_RULES:
        raise ValueError(f"unknown budget rule {budget_rule!r}; valid: {', '.join(BUDGET_RULES)}")
    score_arrays = {name: np.asarray(values, dtype=np.float64).reshape(-1) for name, values in scores.items()}
    for name, values in score_arrays.items():
        if len(values) != n:
            raise ValueError(f"score {name!r} has {len(values)} values for {n} vectors")

    k, labels, wss_by_k = choose_k(
        vectors, k_grid, seed, backend=backend, fit_sample=fit_sample, chunk=chunk,
        search_dim=cluster_dim, search_n_init=k_search_restarts,
    )
    budgets = split_over_clusters(vectors, labels, k, budget, budget_rule, chunk)
    present, members = cluster_members(labels)
    rng = np.random.default_rng(seed)
    chosen_score: dict[int, str] = {}
    picked: list[np.ndarray] = []
    for label, rows in zip(present.tolist(), members):
        cluster_scores = {name: values[rows] for name, values in score_arrays.items()}
        name = choose_score(cluster_scores, bins=bins, trim=trim, min_finite_fraction=min_finite_fraction)
        chosen_score[label] = name
        if budgets[label]:
            picked.append(rows[ccs_sample(cluster_scores[name], budgets[label], rng, bins=bins, trim=trim)])
    indices = np.sort(np.concatenate(picked)).astype(np.int64) if picked else np.empty(0, np.int64)
    return LampSelection(
        indices=indices,
        cluster_of_index=labels[indices],
        labels=labels,
        k=k,
        wss_by_k=wss_by_k,
        chosen_score=chosen_score,
        cluster_sizes=np.bincount(labels, minlength=k)[:k].tolist(),
        cluster_budgets=budgets,
    )


class LampOptions(GradientFeatureOptions):
    vectors: Literal["gradient", "zero_order", "hidden"] = Field(
        "gradient",
        description="Sample vectors to cluster: per-sample gradients (the paper), zero-order (MeZO-style) gradients, "
        "or mean hidden states (the paper's ablation: worse for clustering).",
    )
    k_grid: list[int] = Field(list(DEFAULT_K_GRID), min_length=1, description="Candidate numbers of clusters; k by the WSS elbow.")
    cluster_dim: int | None = Field(
        256, ge=1, description="k-means runs on a seeded Gaussian projection of the vectors to this many coordinates "
        "(distances kept in expectation; 1/8 of the cost at dim 2048); null clusters the vectors themselves.",
    )
    k_search_restarts: int = Field(
        1, ge=1, description="k-means restarts for each k of the grid search; the chosen k is refitted with 3.",
    )
    budget_rule: Literal["even", "density"] = Field(
        "even", description="Per-cluster budget: even split with leftover redistribution, or by cluster density (ablation)."
    )
    scores: list[Literal["perplexity", "image_grounding", "el2n", "entropy"]] = Field(
        ["perplexity", "image_grounding", "el2n", "entropy"], min_length=1, description="Scores the multi-way choice picks from."
    )
    bins: int = Field(50, ge=1, description="CCS and histogram bins.")
    trim: float = Field(0.05, ge=0, lt=0.5, description="Fraction trimmed at each end of a score (CCS and entropy).")


def lamp_features(ctx: SelectionContext, pool: Sequence[Sample], options: LampOptions, label: str, hidden: bool = False):
    """Scores plus the configured sample vectors (and hidden states if asked), in one pass over the pool."""
    vector_kind = "hidden" if options.vectors == "hidden" else "gradients"
    kinds = {"scores", vector_kind} | ({"hidden"} if hidden else set())
    gradient = "zero_order" if options.vectors == "zero_order" else "exact"
    features = pool_features(ctx, pool, kinds, options, label, gradient)
    vectors = features.hidden if vector_kind == "hidden" else features.gradients
    return features, vectors


def lamp_selection(
    ctx: SelectionContext, pool: Sequence[Sample], budget: int, options: LampOptions, label: str, hidden: bool = False
) -> tuple[Selection, np.ndarray, np.ndarray | None]:
    """Run LAMP on the pool.

    Returns:
        The selection (with each chosen sample's cluster and score), the cluster label of
        every pool sample, and the pool's hidden-state vectors when ``hidden`` is asked.
    """
    features, vectors = lamp_features(ctx, pool, options, label, hidden)
    result = lamp_select(
        vectors, {name: features.scores[name] for name in options.scores}, budget, ctx.seed,
        k_grid=tuple(options.k_grid), bins=options.bins, trim=options.trim, budget_rule=options.budget_rule,
        cluster_dim=options.cluster_dim, k_search_restarts=options.k_search_restarts,
    )
    summary = result.summary()
    summary["clusters"] = cluster_summary(result.labels, result.indices, result.chosen_score)
    scores = [result.chosen_score[int(c)] for c in result.cluster_of_index]
    return Selection(result.indices, result.cluster_of_index, scores, summary), result.labels, features.hidden


def cluster_summary(labels: np.ndarray, chosen: np.ndarray, scores: dict[int, str] | None = None) -> dict[str, dict]:
    """``{cluster: {size, selected, score}}`` for the results file and ``mcit select``."""
    sizes = np.bincount(labels)
    picked = np.bincount(labels[chosen], minlength=len(sizes))
    return {
        str(c): {"size": int(sizes[c]), "selected": int(picked[c]), **({"score": scores[c]} if scores and c in scores else {})}
        for c in range(len(sizes))
        if sizes[c]
    }


@SELECTORS.register("lamp")
class LampSelector(Selector):
    """LAMP: k-means of projected per-sample gradients (k by WSS elbow), per-cluster best score, CCS.

    Pseudo-task clusters stand in for the skills selectors may not see; each cluster gets an
    even share of the budget and is sampled along whichever score spreads it best.
    """

    options_class = LampOptions
    options: LampOptions

    def select(self, ctx: SelectionContext, pool: Sequence[Sample], newest: np.ndarray, budget: int) -> Selection:
        return lamp_selection(ctx, pool, budget, self.options, "features (lamp)")[0]
