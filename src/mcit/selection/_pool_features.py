"""The whole pool through the current model, for the model-based selectors (not a selector)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mcit.data.sample import Sample, Subset
from mcit.selection._features import FeatureOptions, Features, HiddenFeatureOptions, compute_features
from mcit.selection._featurestore import in_memory_or_store
from mcit.selection.base import SelectionContext


def pool_features(
    ctx: SelectionContext, pool: Sequence[Sample], kinds: set[str], options: FeatureOptions, label: str, gradient: str = "exact"
) -> Features:
    """Compute ``kinds`` for the whole pool with a progress bar; big matrices are memory-mapped.

    On several processes (``ctx.world``) each computes its contiguous share of the pool and
    the shares are gathered in order on every process (so each selects from the same
    features); the progress bar counts this process's share.
    """
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
    world = ctx.world
    if not world.distributed:
        advance = ctx.progress(label, n)
        return compute_features(ctx.model, ctx.collator, pool, kinds, options, ctx.device, gradient, out=out, on_batch=advance)
    share = Subset(pool, world.span(n))
    advance = ctx.progress(label, len(share))
    local = compute_features(ctx.model, ctx.collator, share, kinds, options, ctx.device, gradient, on_batch=advance)
    return _joined(world.gather([local]), out)


def _joined(parts: list[Features], out: dict[str, np.ndarray]) -> Features:
    """The processes' features in rank order as one :class:`Features` (matrices written into ``out`` where given)."""

    def rows(kind: str) -> np.ndarray | None:
        if getattr(parts[0], kind) is None:
            return None
        matrices = [getattr(part, kind) for part in parts if len(getattr(part, kind))]  # an empty share may be (0, 0)
        if not matrices:
            return getattr(parts[0], kind)
        if kind not in out:
            return np.concatenate(matrices)
        np.concatenate(matrices, out=out[kind])
        return out[kind]

    scores = None
    if parts[0].scores is not None:
        scores = {name: np.concatenate([part.scores[name] for part in parts]) for name in parts[0].scores}
    return Features(scores, rows("gradients"), rows("hidden"))


def hidden_states(ctx: SelectionContext, pool: Sequence[Sample], options: HiddenFeatureOptions, label: str) -> np.ndarray:
    """Mean-pooled hidden states of the pool (the embedding the SemDeDup/DBP/COINCIDE selectors cluster)."""
    return pool_features(ctx, pool, {"hidden"}, options, label).hidden
