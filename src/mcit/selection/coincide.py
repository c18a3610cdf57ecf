"""COINCIDE-style selection: clusters of hidden features, transferable and sparse ones first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field

from mcit.data.sample import Sample
from mcit.selection._baselines import coincide_select
from mcit.selection._features import HiddenFeatureOptions
from mcit.selection._pool_features import hidden_states
from mcit.selection.base import SELECTORS, Selection, SelectionContext, Selector


class CoincideOptions(HiddenFeatureOptions):
    hidden_layer: Literal["first", "middle", "last"] | int = Field("middle", description="LM layer whose mean hidden states are clustered (COINCIDE uses an intermediate layer).")
    k: int = Field(100, ge=1, description="k-means clusters (many small ones; clamped to the pool size).")
    temperature: float = Field(0.1, gt=0, description="Softmax temperature of transitivity / density.")


@SELECTORS.register("coincide")
class CoincideSelector(Selector):
    """COINCIDE-style (Lee et al. 2024): budget by softmax(transitivity / density), random inside."""

    options_class = CoincideOptions
    options: CoincideOptions

    def select(self, ctx: SelectionContext, pool: Sequence[Sample], newest: np.ndarray, budget: int) -> Selection:
        options = self.options
        hidden = hidden_states(ctx, pool, options, "embeddings (coincide)")
        k = min(options.k, len(pool))
        chosen = coincide_select(hidden, budget, ctx.seed, k=k, temperature=options.temperature)
        return Selection(np.sort(chosen), summary={"k": k})
