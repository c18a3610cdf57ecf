"""The whole pool through the current model, for the model-based selectors (not a selector)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mcit.data.sample import Sample
from mcit.selection._features import FeatureOptions, Features, HiddenFeatureOptions, compute_features
from mcit.selection._featurestore import in_memory_or_store
from mcit.selection.base import SelectionContext


def pool_features(
    ctx: SelectionContext, pool: Sequence[Sample], kinds: set[str], options: FeatureOptions, label: str, gradient: str = "exact"
) -> Features:
    """Compute ``kinds`` for the whole pool with a progress bar; big matrices are memory-mapped."""
    n = len(pool)
    widths = {}
    if "gradients" in kinds:
        widths["gradients"] = options.dim if gradient == "exact" else options.zero_order_directions
    if "hidden" in kinds:
        widths["hidden"] = ctx.model.config.get_text_config().hidden_size
    out = {}
    for kind, width in widths.items():
        if ctx.work_dir is not None and n * width * 4 > options.memmap_above_mb * 2**20:
            ctx.work_dir.mkdir(parents=True, exist_ok=True)
            out[kind] = in_memory_or_store(n, width, ctx.work_dir / f"{kind}.f32")
    advance = ctx.progress(label, n)
    return compute_features(ctx.model, ctx.collator, pool, kinds, options, ctx.device, gradient, out=out, on_batch=advance)


def hidden_states(ctx: SelectionContext, pool: Sequence[Sample], options: HiddenFeatureOptions, label: str) -> np.ndarray:
    """Mean-pooled hidden states of the pool (the embedding the SemDeDup/DBP/COINCIDE selectors cluster)."""
    return pool_features(ctx, pool, {"hidden"}, options, label).hidden
