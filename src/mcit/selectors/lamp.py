"""LAMP (Adapt-inf): gradient pseudo-task clusters, multi-way score choice, CCS per cluster."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field

from mcit.data.sample import Sample
from mcit.selection.clustering import DEFAULT_K_GRID
from mcit.selection.features import FeatureOptions
from mcit.selection.lamp import lamp_select
from mcit.selectors._features import ModelFeatureOptions, cluster_summary, pool_features
from mcit.selectors.base import SELECTORS, Selection, SelectionContext, Selector


class LampOptions(ModelFeatureOptions):
    vectors: Literal["gradient", "zero_order", "hidden"] = Field(
        "gradient",
        description="Sample vectors to cluster: per-sample gradients (the paper), zero-order (MeZO-style) gradients, "
        "or mean hidden states (the paper's ablation: worse for clustering).",
    )
    layer: Literal["first", "middle", "last", "all"] | int = Field(
        "middle", description="LM decoder layer whose trainable linear weights give the gradient ('all' = the all-layers ablation)."
    )
    dim: int = Field(8192, ge=1, description="Random-projection dimension of the gradient vectors (8192 in the paper).")
    zero_order_directions: int = Field(64, ge=1, description="Random directions (= vector size) of zero-order gradients.")
    hidden_layer: Literal["first", "middle", "last"] | int = Field("last", description="Layer of the hidden-state vectors.")
    k_grid: list[int] = Field(list(DEFAULT_K_GRID), min_length=1, description="Candidate numbers of clusters; k by the WSS elbow.")
    budget_rule: Literal["even", "density"] = Field(
        "even", description="Per-cluster budget: even split with leftover redistribution, or by cluster density (ablation)."
    )
    scores: list[Literal["perplexity", "image_grounding", "el2n", "entropy"]] = Field(
        ["perplexity", "image_grounding", "el2n", "entropy"], min_length=1, description="Scores the multi-way choice picks from."
    )
    bins: int = Field(50, ge=1, description="CCS and histogram bins.")
    trim: float = Field(0.05, ge=0, lt=0.5, description="Fraction trimmed at each end of a score (CCS and entropy).")
    seed_projection: int = Field(0, description="Seed of the gradient projection (fixed across steps so vectors are comparable).")


def lamp_features(ctx: SelectionContext, pool: Sequence[Sample], options: LampOptions, label: str, hidden: bool = False):
    """Scores plus the configured sample vectors (and hidden states if asked), in one pass over the pool."""
    vector_kind = "hidden" if options.vectors == "hidden" else "gradients"
    feature_options = FeatureOptions(
        layer=options.layer, dim=options.dim, gradient="zero_order" if options.vectors == "zero_order" else "exact",
        zero_order_directions=options.zero_order_directions, hidden_layer=options.hidden_layer,
        batch_size=options.batch_size, seed=options.seed_projection,
    )
    kinds = {"scores", vector_kind} | ({"hidden"} if hidden else set())
    features = pool_features(ctx, pool, kinds, feature_options, label, options.memmap_above_mb)
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
    )
    summary = result.summary()
    summary["clusters"] = cluster_summary(result.labels, result.indices, result.chosen_score)
    scores = [result.chosen_score[int(c)] for c in result.cluster_of_index]
    return Selection(result.indices, result.cluster_of_index, scores, summary), result.labels, features.hidden


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
