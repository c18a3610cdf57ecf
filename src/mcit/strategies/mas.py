"""Memory aware synapses: importance = sensitivity of the output norm to each parameter."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from mcit.data.collate import Batch
from mcit.losses import answer_positions
from mcit.strategies._anchor import Anchor
from mcit.strategies._importance import Tensors, importance_mean, normalise_mean_one, parameter_grads, snapshot
from mcit.strategies.base import STRATEGIES, Context, Strategy, StrategyOptions


class MASOptions(StrategyOptions):
    strength: float = Field(
        1.0, ge=0, description="lambda in lambda sum Omega (theta - theta*)^2 (Omega normalised to mean 1 by default)."
    )
    importance_samples: int = Field(200, ge=1, description="Training samples of the finished task used for Omega.")
    batch_size: int = Field(
        1, ge=1, description="Samples per gradient: 1 is the exact per-sample rule; more is cheaper (|batch gradient|)."
    )
    normalise: bool = Field(True, description="Scale each task's Omega to mean 1 over all trainable elements.")


def output_sensitivity(ctx: Context, options: MASOptions) -> Tensors:
    """``Omega = 1/N sum_n |d ||f(x_n)||^2 / d theta|`` on the current task's samples.

    f(x) = the logits at positions that predict answer tokens (labels != -100 after the
    next-token shift); ||f(x)||^2 is the squared L2 norm over the vocabulary, averaged over
    those positions (token mean, like the losses). With ``batch_size`` > 1 the absolute
    value is taken of the batch-mean gradient instead (a cheaper approximation).
    """

    def absolute_gradient(batch, weight: float) -> Tensors:
        logits, _ = answer_positions(ctx.model(**batch.inputs).logits, batch.labels)
        sensitivity = logits.square().sum(-1).mean() * weight
        return {name: g.abs() for name, g in parameter_grads(ctx, sensitivity).items()}

    return importance_mean(ctx, options.batch_size, options.importance_samples, "mas", absolute_gradient)


@STRATEGIES.register("mas")
class MAS(Strategy):
    """MAS: task loss + ``strength * sum_i Omega_i (theta_i - theta*_i)^2``.

    After each task, Omega_t (see :func:`output_sensitivity`) is estimated on up to
    ``importance_samples`` of its training samples (seeded subset, model in eval mode).
    Choices METHODS.md leaves to us, as in :class:`~mcit.strategies.ewc.EWC`: Omega_t is
    normalised to mean 1 (``normalise``), tasks are combined by an equal-weight running
    mean, theta* = parameters at the end of the last task, and no penalty during the first
    task. Default strength 1.0, the same as ewc and l2 (mean-1 importance).
    """

    options_class = MASOptions
    options: MASOptions
    supports_sharding = True

    def __init__(self, options: MASOptions | None = None) -> None:
        super().__init__(options)
        self.anchor = Anchor()

    def loss(self, ctx: Context, batch: Batch, outputs: Any, loss: torch.Tensor) -> torch.Tensor:
        return self.anchor.penalised(ctx, loss, self.options.strength)

    def after_task(self, ctx: Context) -> None:
        omega = output_sensitivity(ctx, self.options)
        self.anchor.average_in(normalise_mean_one(omega, ctx.world) if self.options.normalise else omega)
        self.anchor.theta_star = snapshot(ctx)

    def state_dict(self) -> dict[str, Any]:
        return {"anchor": self.anchor.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.anchor.load_state_dict(state.get("anchor", {}))
