"""Density-based pruning (DBP): more of the budget to complex clusters of embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import Field

from mcit.data.sample import Sample
from mcit.selection._baselines import density_select
from mcit.selection._features import HiddenFeatureOptions
from mcit.selection._pool_features import hidden_states
from mcit.selection.base import SELECTORS, Selection, SelectionContext, Selector


class DensityOptions(HiddenFeatureOptions):
    k: int = Field(50, ge=1, description="k-means clusters of the embeddings (clamped to the pool size).")
    temperature: float = Field(0.1, gt=0, description="Softmax temperature of the per-cluster complexity.")


@SELECTORS.register("density")
class DensitySelector(Selector):
    """DBP-style (Abbas et al. 2024): budget per cluster by softmax(complexity), random inside."""

    options_class = DensityOptions
    options: DensityOptions

    def select(self, ctx: SelectionContext, pool: Sequence[Sample], newest: np.ndarray, budget: int) -> Selection:
        options = self.options
        hidden = hidden_states(ctx, pool, options, "embeddings (density)")
        k = min(options.k, len(pool))
        chosen = density_select(hidden, budget, ctx.seed, k=k, temperature=options.temperature)
        return Selection(np.sort(chosen), summary={"k": k})
