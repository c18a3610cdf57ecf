"""theta* and Omega of the finished tasks, and the penalty they define (l2, ewc, mas, si, tir)."""

from __future__ import annotations

from typing import Any

import torch

from mcit.sharding import local
from mcit.strategies._importance import Tensors, anchored, running_mean, tensors_state
from mcit.strategies._penalty import FlatTensors, PenaltyVectors, QuadraticPenalty
from mcit.strategies.base import Context


def _resets_vectors(attribute: str) -> property:
    """A property over ``attribute`` whose setter also drops :class:`Anchor`'s kept vectors."""

    def get(self: Anchor) -> Tensors | None:
        return getattr(self, attribute)

    def set_(self: Anchor, value: Tensors | None) -> None:
        setattr(self, attribute, value)
        self._flat = None

    return property(get, set_)


class Anchor:
    """theta* and Omega of a finished-task sequence, and the penalty they define.

    theta* and Omega are kept by parameter name (the state format) and, for the per-step
    penalty, as :class:`FlatTensors` on ``ctx.vectors_device`` (the training device, or host
    memory with ``train.offload_method_state``) laid out like the trainable parameters, with the by-name dicts pointing at views of them (one copy in memory). The
    vectors are built at the first penalty after theta* or Omega is assigned (once per task)
    and again if the trainable parameters' names or the device change. Assign new dicts to
    ``theta_star`` / ``importance`` rather than replacing their entries, so the vectors follow.

    Attributes:
        theta_star: Trainable parameters (fp32) at the end of the last finished task.
        importance: Omega by parameter name (fp32), or ``None`` for Omega = 1.
        tasks: Finished tasks folded into ``importance`` so far.
        penalty_grads: The fp32 gradient the penalty's backward passes of the current
            optimizer step added to the parameters (laid out like them, summed over the
            step's micro-batches), if it was asked to record it; ``None`` if not, or if no
            backward has gone through it since the step's first penalty.
    """

    def __init__(self) -> None:
        self._theta_star: Tensors | None = None
        self._importance: Tensors | None = None
        self.tasks = 0
        self.penalty_grads: FlatTensors | None = None
        self._flat: tuple[tuple[str, ...], torch.device, PenaltyVectors] | None = None

    # Assigning either drops the kept vectors; the next penalty rebuilds them.
    theta_star = _resets_vectors("_theta_star")
    importance = _resets_vectors("_importance")

    def _vectors(self, ctx: Context, names: tuple[str, ...]) -> PenaltyVectors:
        """theta* and Omega laid out like ``names``, on ``ctx.vectors_device`` (kept per layout)."""
        device = ctx.vectors_device
        if self._flat is not None and self._flat[0] == names and self._flat[1] == device:
            return self._flat[2]
        assert self._theta_star is not None
        omega = None if self._importance is None else [self._importance[name] for name in names]
        vectors = PenaltyVectors.of([self._theta_star[name] for name in names], omega, device, ctx.streams_state)
        vectors.hand_over_copy = ctx.world.sharded
        self._theta_star = {**self._theta_star, **vectors.theta_star.by_name(names)}
        if vectors.importance is not None:
            self._importance = {**self._importance, **vectors.importance.by_name(names)}
        self._flat = (names, device, vectors)
        return vectors

    def penalty(self, ctx: Context, scale: float = 1.0, record_gradients: bool = False) -> torch.Tensor | None:
        """``scale * sum Omega (theta - theta*)^2``, or ``None`` before the first task has finished.

        With ``record_gradients`` (what SI needs), the backward pass through it sets
        ``penalty_grads``.
        """
        if self._theta_star is None:
            return None
        if ctx.micro_batch == 0:
            self.penalty_grads = None
        names, params = anchored(ctx, self._theta_star)
        if not params:
            return torch.zeros((), device=ctx.device, dtype=torch.float32)
        sink = self if record_gradients else None
        if ctx.world.sharded:  # this process's shards' part of the penalty, entering the step once
            params = [local(p) for p in params]
            scale = ctx.shard_term(scale)
        with torch.autocast(ctx.device.type, enabled=False):  # fp32, under bf16 autocast too
            return QuadraticPenalty.apply(self._vectors(ctx, names), float(scale), sink, *params)

    def penalised(
        self, ctx: Context, loss: torch.Tensor, scale: float, record_gradients: bool = False
    ) -> torch.Tensor:
        """``loss + scale * penalty``; ``loss`` unchanged before the first task has finished."""
        # The scale goes into the penalty node, which folds it into the gradient it prepares.
        penalty = self.penalty(ctx, scale, record_gradients)
        return loss if penalty is None else loss + penalty

    def average_in(self, importance: Tensors) -> None:
        """Fold one finished task's Omega into the running mean over tasks."""
        self.importance = running_mean(self._importance, importance, self.tasks)
        self.tasks += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "theta_star": tensors_state(self._theta_star),
            "importance": tensors_state(self._importance),
            "tasks": self.tasks,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.theta_star = state.get("theta_star")
        self.importance = state.get("importance")
        self.tasks = int(state.get("tasks", 0))
        self.penalty_grads = None
