"""Options and feature computation shared by the model-based selectors (not a selector)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field

from mcit.data.sample import Sample
from mcit.selection.features import FeatureOptions, Features, compute_features
from mcit.selection.featurestore import in_memory_or_store
from mcit.selectors.base import SelectionContext, SelectorOptions

Layer = Literal["first", "middle", "last", "all"] | int


class ModelFeatureOptions(SelectorOptions):
    """How the current model turns pool samples into scores and vectors."""

    batch_size: int = Field(16, ge=1, description="Samples per forward pass while computing features.")
    memmap_above_mb: float = Field(
        256, ge=0, description="Feature matrices larger than this go to a memory-mapped file in the run directory (then deleted)."
    )


class HiddenOptions(ModelFeatureOptions):
    hidden_layer: Literal["first", "middle", "last"] | int = Field(
        "last", description="LM layer whose hidden states are mean-pooled over the sample's tokens."
    )


def pool_features(
    ctx: SelectionContext, pool: Sequence[Sample], kinds: set[str], options: FeatureOptions, label: str, memmap_above_mb: float
) -> Features:
    """Compute ``kinds`` for the whole pool with a progress bar; big matrices are memory-mapped."""
    n = len(pool)
    widths = {}
    if "gradients" in kinds:
        widths["gradients"] = options.dim if options.gradient == "exact" else options.zero_order_directions
    if "hidden" in kinds:
        widths["hidden"] = ctx.model.config.get_text_config().hidden_size
    out = {}
    for kind, width in widths.items():
        if ctx.work_dir is not None and n * width * 4 > memmap_above_mb * 2**20:
            ctx.work_dir.mkdir(parents=True, exist_ok=True)
            out[kind] = in_memory_or_store(n, width, ctx.work_dir / f"{kind}.f32")
    advance = ctx.progress(label, n)
    return compute_features(ctx.model, ctx.collator, pool, kinds, options, ctx.device, out=out, on_batch=advance)


def hidden_states(ctx: SelectionContext, pool: Sequence[Sample], options: HiddenOptions, label: str) -> np.ndarray:
    """Mean-pooled hidden states of the pool (the embedding the SemDeDup/DBP/COINCIDE selectors cluster)."""
    feature_options = FeatureOptions(hidden_layer=options.hidden_layer, batch_size=options.batch_size)
    return pool_features(ctx, pool, {"hidden"}, feature_options, label, options.memmap_above_mb).hidden


def cluster_summary(labels: np.ndarray, chosen: np.ndarray, scores: dict[int, str] | None = None) -> dict[str, dict]:
    """``{cluster: {size, selected, score}}`` for the results file and ``mcit select``."""
    sizes = np.bincount(labels)
    picked = np.bincount(labels[chosen], minlength=len(sizes))
    return {
        str(c): {"size": int(sizes[c]), "selected": int(picked[c]), **({"score": scores[c]} if scores and c in scores else {})}
        for c in range(len(sizes))
        if sizes[c]
    }
