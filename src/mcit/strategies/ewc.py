"""Elastic weight consolidation (online): a Fisher-weighted pull to the previous parameters."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from mcit.data.collate import Batch
from mcit.losses import answer_loss
from mcit.strategies._anchor import Anchor
from mcit.strategies._importance import Tensors, importance_mean, normalise_mean_one, parameter_grads, snapshot
from mcit.strategies.base import STRATEGIES, Context, Strategy, StrategyOptions


class EWCOptions(StrategyOptions):
    strength: float = Field(
        1.0, ge=0, description="lambda in 1/2 lambda sum F (theta - theta*)^2 (F normalised to mean 1 by default)."
    )
    fisher: Literal["per_sample", "empirical"] = Field(
        "per_sample",
        description="per_sample: mean of squared per-sample gradients (exact diagonal, one backward per sample); "
        "empirical: squared batch-mean gradients over `batch_size` batches (cheaper, biased towards 0).",
    )
    importance_samples: int = Field(200, ge=1, description="Training samples of the finished task used for the Fisher.")
    batch_size: int = Field(16, ge=1, description="Batch size of the `empirical` Fisher (per_sample always uses 1).")
    normalise: bool = Field(True, description="Scale each task's Fisher to mean 1 over all trainable elements.")


def fisher_diagonal(ctx: Context, options: EWCOptions) -> Tensors:
    """Diagonal Fisher of the answer-token NLL (gold labels) on the current task's samples.

    ``per_sample``: ``F = 1/N sum_n g_n^2`` with ``g_n`` the gradient of one sample's
    token-mean NLL. ``empirical``: ``F = 1/B sum_b gbar_b^2`` with ``gbar_b`` the gradient of
    a batch's token-mean NLL; cross terms between samples make it smaller and noisier.
    """
    batch_size = 1 if options.fisher == "per_sample" else options.batch_size

    def squared_gradient(batch, weight: float) -> Tensors:
        outputs = ctx.model(**batch.inputs)
        loss = answer_loss(outputs.logits, batch.labels) * weight
        return {name: g.square() for name, g in parameter_grads(ctx, loss).items()}

    return importance_mean(ctx, batch_size, options.importance_samples, "ewc", squared_gradient)


@STRATEGIES.register("ewc")
class EWC(Strategy):
    """Online EWC: task loss + ``1/2 strength * sum_i F_i (theta_i - theta*_i)^2``.

    After each task, the diagonal Fisher F_t of the answer-token NLL is estimated on up to
    ``importance_samples`` of its training samples (seeded subset, model in eval mode), by
    default as the mean of squared per-sample gradients. Choices METHODS.md leaves to us:

    - Each F_t is normalised to mean 1 over all trainable elements (``normalise``), so
      ``strength`` does not depend on the loss scale; the un-normalised values are tiny
      (token-mean losses) and would need lambda in 1e2..1e8.
    - Online EWC as an equal-weight running mean over tasks: F = mean_t F_t (normalised per
      task, so every old task weighs the same and mean(F) stays 1).
    - theta* = the trainable parameters (fp32) at the end of the last task; no penalty
      during the first task.
    - Default strength 1.0: with mean-1 F the penalty is then of the order of the task loss
      for the displacements one task of fine-tuning produces (sum over elements of ~1e-5).
    """

    options_class = EWCOptions
    options: EWCOptions
    supports_sharding = True

    def __init__(self, options: EWCOptions | None = None) -> None:
        super().__init__(options)
        self.anchor = Anchor()

    def loss(self, ctx: Context, batch: Batch, outputs: Any, loss: torch.Tensor) -> torch.Tensor:
        return self.anchor.penalised(ctx, loss, 0.5 * self.options.strength)

    def after_task(self, ctx: Context) -> None:
        fisher = fisher_diagonal(ctx, self.options)
        self.anchor.average_in(normalise_mean_one(fisher, ctx.world) if self.options.normalise else fisher)
        self.anchor.theta_star = snapshot(ctx)

    def state_dict(self) -> dict[str, Any]:
        return {"anchor": self.anchor.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.anchor.load_state_dict(state.get("anchor", {}))
