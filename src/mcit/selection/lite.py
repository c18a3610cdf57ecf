"""LITE: LAMP selection plus permanent pruning of the pool to a size budget."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mcit.data.sample import Sample
from mcit.selection._prune import lite_prune
from mcit.selection.base import SELECTORS, Selection, SelectionContext, Selector
from mcit.selection.lamp import LampOptions, lamp_selection


class LiteOptions(LampOptions):
    """LAMP's options; the pool budget itself is ``pool.pool_budget`` of the run config."""


@SELECTORS.register("lite")
class LiteSelector(Selector):
    """LAMP selection, then the pool is pruned to ``pool.pool_budget`` at the end of the step.

    Pruning follows METHODS.md (LITE): inside each of LAMP's pseudo-task clusters a sample's
    redundancy is its max cosine similarity to earlier samples of the cluster, in
    hidden-state space (the representation the paper finds right for deduplication); the
    most redundant samples of the largest clusters go first until the pool fits. Clusters
    and hidden states are the ones computed for this step's selection (same pool, one pass
    of the model), so pruning adds no forward pass; they reflect the model before the
    step's training, as the selection does.
    """

    options_class = LiteOptions
    options: LiteOptions
    prunes = True

    def __init__(self, options: LiteOptions | None = None) -> None:
        super().__init__(options)
        self._pool_size: int | None = None
        self._labels: np.ndarray | None = None
        self._hidden: np.ndarray | None = None

    def select(self, ctx: SelectionContext, pool: Sequence[Sample], newest: np.ndarray, budget: int) -> Selection:
        selection, self._labels, self._hidden = lamp_selection(ctx, pool, budget, self.options, "features (lite)", hidden=True)
        self._pool_size = len(pool)
        return selection

    def prune(self, ctx: SelectionContext, pool: Sequence[Sample], pool_budget: int) -> np.ndarray:
        if self._labels is None or self._pool_size != len(pool):
            # Pruning without this step's selection features: compute them now.
            self.select(ctx, pool, np.arange(len(pool)), min(pool_budget, len(pool)))
        if len(pool) <= pool_budget:
            return np.arange(len(pool), dtype=np.int64)
        keep = lite_prune(self._hidden, self._labels, pool_budget)
        self._labels = self._hidden = None
        return np.sort(keep)
