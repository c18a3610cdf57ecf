"""Dynamic Gradient Guidance: add the pull back to the previous task's weights, sometimes."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

import torch
from pydantic import Field

from mcit.strategies._buffer import derived_seed
from mcit.strategies.base import STRATEGIES, Context, Strategy, StrategyOptions

logger = logging.getLogger(__name__)


class DGGOptions(StrategyOptions):
    """Gate probability and how the guidance is scaled."""

    alpha: float = Field(0.2, ge=0.0, le=1.0, description="Probability that a step adds the guidance (Bernoulli gate).")
    alpha_per_task: list[Annotated[float, Field(ge=0.0, le=1.0)]] | None = Field(
        None,
        description="Gate probability per task index (overrides alpha; tasks past the end of the list use alpha).",
    )
    norm: Literal["global", "per_tensor"] = Field(
        "global",
        description="Clip the displacement to the gradient norm over all trainable parameters together "
        "('global') or tensor by tensor ('per_tensor').",
    )


def guidance(
    displacement: list[torch.Tensor], grads: list[torch.Tensor], norm: str = "global"
) -> list[torch.Tensor | None]:
    """DGG's approximate old-task gradient ``g_hat = d * min(1, ||g|| / ||d||)``.

    Args:
        displacement: ``d = theta - theta*`` per tensor (the gradient of
            ``1/2 ||theta - theta*||^2``).
        grads: The current gradient per tensor, same shapes.
        norm: ``"global"``: one scale from the norms over all tensors; ``"per_tensor"``: a
            scale per tensor.

    Returns:
        g_hat per tensor, or ``None`` where nothing is added (``||d|| = 0``: at the start of
        a task, or a tensor that has not moved).
    """
    if norm == "global":
        d_norm = torch.sqrt(sum(d.float().pow(2).sum() for d in displacement))
        if d_norm == 0:
            return [None] * len(displacement)
        g_norm = torch.sqrt(sum(g.float().pow(2).sum() for g in grads))
        scale = torch.clamp(g_norm / d_norm, max=1.0)
        return [d * scale for d in displacement]
    if norm == "per_tensor":
        out: list[torch.Tensor | None] = []
        for d, g in zip(displacement, grads):
            d_norm = d.float().norm()
            out.append(None if d_norm == 0 else d * torch.clamp(g.float().norm() / d_norm, max=1.0))
        return out
    raise ValueError(f"unknown norm {norm!r}; valid: global, per_tensor")


@STRATEGIES.register("dgg")
class DynamicGradientGuidance(Strategy):
    """Dynamic Gradient Guidance (Li et al., CVPR 2026, arXiv 2511.15164).

    Forgetting is read as missing old-task gradients, approximated by the displacement
    ``d = theta - theta*`` from the weights theta* at the start of the current task (the end
    of the previous one; the initial weights for the first task), i.e. the gradient of
    ``1/2 ||theta - theta*||^2``. It is clipped to the current gradient norm,
    ``g_hat = d * min(1, ||g_cur|| / ||d||)``, and at each step with probability alpha
    (seeded by the task seed and step, so a resumed run draws the same gates) added to the
    gradient: ``.grad += g_hat``. Since the optimizer steps along ``-grad``, this pulls
    theta back toward theta*. At the start of each task d = 0, so nothing is added.

    DGG is gradient guidance only; its replay buffer comes from composing with er. The
    recommended config is ``method: [er, dgg]`` (see ``configs/dgg.yaml``): er mixes the
    buffer into the batch, so .grad is already grad L(T_t U M) when this hook runs.

    Choices the paper leaves open, with their defaults:
      - norms: global over all trainable parameters (option ``norm``; or per tensor);
      - ||g_cur|| is measured after the replay term (the .grad of the mixed batch, and after
        any earlier strategy's gradient surgery in the chain); the before-replay variant
        would need a second backward pass and is not offered;
      - g_hat goes through the optimizer: it is added to .grad before the loop's gradient
        clipping and ``optimizer.step()`` (the loop has no after-step hook for a direct
        parameter update);
      - per-task alpha (``alpha_per_task``), as the paper's UCIT runs use.

    theta* is kept in fp32 on CPU and saved in the strategy state (one copy of the
    trainable weights), with a working copy on the training device during a task.
    """

    options_class = DGGOptions
    options: DGGOptions

    def __init__(self, options: DGGOptions | None = None) -> None:
        super().__init__(options)
        self.anchor: dict[str, torch.Tensor] = {}
        self._anchor_on_device: dict[str, torch.Tensor] = {}

    def rate(self, task_index: int) -> float:
        """Gate probability for the task with this index."""
        per_task = self.options.alpha_per_task
        if per_task is None:
            return self.options.alpha
        return per_task[task_index] if task_index < len(per_task) else self.options.alpha

    def before_task(self, ctx: Context) -> None:
        per_task = self.options.alpha_per_task
        if per_task is not None and ctx.task.index >= len(per_task):
            logger.warning("dgg: alpha_per_task has no task %d; using alpha=%s", ctx.task.index, self.options.alpha)
        self.anchor = {name: p.detach().float().cpu().clone() for name, p in ctx.trainable()}
        self._anchor_on_device = {}

    def gate(self, ctx: Context) -> bool:
        """The step's Bernoulli(alpha) draw, a function of (task seed, step) only."""
        generator = torch.Generator().manual_seed(derived_seed("dgg", ctx.seed, ctx.step))
        return bool(torch.rand((), generator=generator).item() < self.rate(ctx.task.index))

    def after_backward(self, ctx: Context, batch) -> None:
        if not self.gate(ctx):
            return
        named = [(name, p) for name, p in ctx.trainable() if name in self.anchor]
        if not named:
            return
        if not self._anchor_on_device:
            self._anchor_on_device = {name: self.anchor[name].to(p.device) for name, p in named}
        displacement = [p.detach().float() - self._anchor_on_device[name] for name, p in named]
        grads = [p.grad.detach() if p.grad is not None else torch.zeros_like(p) for _, p in named]
        for (_, p), extra in zip(named, guidance(displacement, grads, self.options.norm)):
            if extra is None:
                continue
            if p.grad is None:
                p.grad = extra.to(p.dtype)
            else:
                p.grad.add_(extra.to(p.grad.dtype))

    def state_dict(self) -> dict[str, Any]:
        return {"anchor": dict(self.anchor)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.anchor = {name: tensor.float() for name, tensor in state.get("anchor", {}).items()}
        self._anchor_on_device = {}
