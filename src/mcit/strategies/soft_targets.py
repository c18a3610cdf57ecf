"""Soft targets (Srivastava et al.): train on a target that keeps a little mass on every token."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from mcit.data.collate import Batch
from mcit.losses import answer_loss, soft_target_loss
from mcit.strategies.base import STRATEGIES, Context, Strategy, StrategyOptions


class SoftTargetsOptions(StrategyOptions):
    alpha: float = Field(
        0.01, ge=0, lt=1,
        description="Mass spread over the other N-1 vocabulary tokens (gold gets 1-alpha); the paper's grid is {0.001, 0.01, 0.1}, 0.01 best.",
    )  # fmt: skip


TASK_LOSS_ROLE = "task loss"


@STRATEGIES.register("soft_targets")
class SoftTargets(Strategy):
    """Replace the task's cross-entropy by cross-entropy against soft targets.

    The target puts ``1 - alpha`` on the gold answer token and ``alpha / (N - 1)`` on each
    other token (not torch's label smoothing; see :func:`mcit.losses.soft_target_loss`).
    Only the task term is swapped: a penalty another method of the chain adds stays. It owns
    the task loss, so a chain holds one method that swaps it (not both soft_targets and msgm).
    Keeping probability on every token keeps the language model's output distribution from
    collapsing onto the task's answers, which is how it reduces linguistic forgetting.
    """

    options_class = SoftTargetsOptions
    options: SoftTargetsOptions
    supports_sharding = True

    @classmethod
    def owns(cls, options: SoftTargetsOptions) -> frozenset[str]:
        return frozenset({TASK_LOSS_ROLE})

    def loss(self, ctx: Context, batch: Batch, outputs: Any, loss: torch.Tensor) -> torch.Tensor:
        hard = answer_loss(outputs.logits, batch.labels)
        return loss - hard + soft_target_loss(outputs.logits, batch.labels, self.options.alpha)
