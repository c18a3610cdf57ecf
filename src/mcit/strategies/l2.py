"""L2 regularization: pull every trainable parameter towards its value after the last task."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from mcit.data.collate import Batch
from mcit.strategies._anchor import Anchor
from mcit.strategies._importance import snapshot
from mcit.strategies.base import STRATEGIES, Context, Strategy, StrategyOptions


class L2Options(StrategyOptions):
    strength: float = Field(
        1.0,
        ge=0,
        description="lambda in lambda * sum (theta - theta*)^2 (summed, not averaged, over trainable elements).",
    )


@STRATEGIES.register("l2")
class L2(Strategy):
    """Plain L2 pull to the previous task's parameters (Omega = 1).

    Loss = task loss + ``strength * sum_i (theta_i - theta*_i)^2`` over trainable parameters,
    theta* = the trainable parameters (fp32 copy) at the end of the previous task. No penalty
    during the first task. The default strength 1.0 matches the other methods of the family,
    whose Omega is normalised to mean 1, so the same lambda means the same average pull.
    """

    options_class = L2Options
    options: L2Options
    supports_sharding = True

    def __init__(self, options: L2Options | None = None) -> None:
        super().__init__(options)
        self.anchor = Anchor()

    def loss(self, ctx: Context, batch: Batch, outputs: Any, loss: torch.Tensor) -> torch.Tensor:
        return self.anchor.penalised(ctx, loss, self.options.strength)

    def after_task(self, ctx: Context) -> None:
        self.anchor.theta_star = snapshot(ctx)
        self.anchor.tasks += 1

    def state_dict(self) -> dict[str, Any]:
        return {"anchor": self.anchor.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.anchor.load_state_dict(state.get("anchor", {}))
