"""Sequential: train on the newest dataset only, as plain continual fine-tuning does."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mcit.data.sample import Sample
from mcit.selection.base import SELECTORS, Selection, SelectionContext, Selector, uniform


@SELECTORS.register("sequential")
class SequentialSelector(Selector):
    """The newest dataset only (a uniform ``budget``-sized subset of it when it is larger).

    The lower bound of the pool scenario; with ``method: [er]`` on top it is LAMP's
    "random experience replay" baseline.
    """

    def select(self, ctx: SelectionContext, pool: Sequence[Sample], newest: np.ndarray, budget: int) -> Selection:
        chosen = uniform(len(newest), budget, ctx.seed)
        return Selection(np.sort(np.asarray(newest, dtype=np.int64)[chosen]))
