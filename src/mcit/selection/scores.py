"""Single-score selection: one per-sample score and coverage-centric sampling (CCS) along it.

LAMP's single-score baselines. The four selectors differ only in the score they read, so
they are one class registered under four names (each name fixes ``score``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import Field

from mcit.data.sample import Sample
from mcit.selection._ccs import ccs_sample
from mcit.selection._features import FeatureOptions
from mcit.selection._pool_features import pool_features
from mcit.selection.base import SELECTORS, Selection, SelectionContext, Selector

SCORE_HELP = {
    "perplexity": "log-perplexity of the answer tokens",
    "image_grounding": "log(PPL without image / PPL with image); text-only samples have none",
    "el2n": "mean ||softmax - onehot|| over answer tokens",
    "entropy": "mean token entropy of the output distribution",
}


class ScoreOptions(FeatureOptions):
    bins: int = Field(50, ge=1, description="CCS: equal-width bins over the score's range.")
    trim: float = Field(0.05, ge=0, lt=0.5, description="CCS: fraction dropped at each end of the score before binning.")


class ScoreSelector(Selector):
    """``budget`` samples by CCS along one score computed with the current model."""

    options_class = ScoreOptions
    options: ScoreOptions
    score = ""

    def select(self, ctx: SelectionContext, pool: Sequence[Sample], newest: np.ndarray, budget: int) -> Selection:
        features = pool_features(ctx, pool, {"scores"}, self.options, f"scores ({self.score})")
        values = features.scores[self.score]
        rng = np.random.default_rng(ctx.seed)
        chosen = np.sort(ccs_sample(values, budget, rng, bins=self.options.bins, trim=self.options.trim))
        finite = values[np.isfinite(values)]
        summary = {"score": self.score, "missing": int(len(values) - len(finite))}
        if len(finite):
            summary.update({"min": float(finite.min()), "max": float(finite.max()), "mean": float(finite.mean())})
        return Selection(chosen, None, [self.score] * len(chosen), summary)


for _score, _help in SCORE_HELP.items():
    SELECTORS.register(_score, help=f"CCS along {_help}")(type(f"{_score.title()}Selector", (ScoreSelector,), {"score": _score}))
