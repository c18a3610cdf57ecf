"""SemDeDup: drop semantic near-duplicates (hidden-state embeddings) down to the budget."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import Field

from mcit.data.sample import Sample
from mcit.selection._baselines import semdedup
from mcit.selection._features import HiddenFeatureOptions
from mcit.selection._pool_features import hidden_states
from mcit.selection.base import SELECTORS, Selection, SelectionContext, Selector


class SemDeDupOptions(HiddenFeatureOptions):
    k: int = Field(50, ge=1, description="k-means clusters of the embeddings (clamped to the pool size).")


@SELECTORS.register("semdedup")
class SemDeDupSelector(Selector):
    """k-means on mean hidden states; inside each cluster the most redundant samples go first."""

    options_class = SemDeDupOptions
    options: SemDeDupOptions

    def select(self, ctx: SelectionContext, pool: Sequence[Sample], newest: np.ndarray, budget: int) -> Selection:
        options = self.options
        hidden = hidden_states(ctx, pool, options, "embeddings (semdedup)")
        k = min(options.k, len(pool))
        chosen = semdedup(hidden, budget, ctx.seed, k=k)
        return Selection(np.sort(chosen), summary={"k": k})
