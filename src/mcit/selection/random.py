"""Random pool selection: the budget drawn uniformly from the whole pool (LAMP's baseline)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mcit.data.sample import Sample
from mcit.selection.base import SELECTORS, Selection, SelectionContext, Selector, uniform


@SELECTORS.register("random")
class RandomSelector(Selector):
    """``budget`` samples uniformly at random from the whole pool (old and new datasets)."""

    def select(self, ctx: SelectionContext, pool: Sequence[Sample], newest: np.ndarray, budget: int) -> Selection:
        return Selection(uniform(len(pool), budget, ctx.seed))
