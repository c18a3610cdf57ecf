"""Shared pieces of the regularization family (l2, ewc, mas, si); not a method itself.

Every method of the family adds ``scale * sum_i Omega_i (theta_i - theta*_i)^2`` over the
trainable parameters. This module holds what they share: fp32 snapshots of the parameters,
that quadratic penalty, mean-1 normalisation of Omega, a running mean over tasks, and seeded
batches of a finished task's training samples for importance estimation.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import torch

from mcit.data.collate import IGNORE_INDEX, Batch
from mcit.strategies.base import Context

Tensors = dict[str, torch.Tensor]


def snapshot(ctx: Context) -> Tensors:
    """Detached fp32 copies of the trainable parameters, by name, on their own device."""
    return {name: param.detach().float().clone() for name, param in ctx.trainable()}


def quadratic_penalty(ctx: Context, anchor: Tensors, importance: Tensors | None) -> torch.Tensor:
    """``sum_i Omega_i (theta_i - theta*_i)^2`` over trainable parameters, in fp32.

    Args:
        ctx: Context whose trainable parameters are theta.
        anchor: theta* by parameter name.
        importance: Omega by parameter name; ``None`` means Omega = 1 (plain L2 pull).

    Returns:
        A scalar that carries gradients to the parameters.
    """
    total = torch.zeros((), device=ctx.device, dtype=torch.float32)
    for name, param in ctx.trainable():
        displacement = param.float() - anchor[name]
        squared = displacement.square()
        total = total + (squared.sum() if importance is None else (importance[name] * squared).sum())
    return total


def normalise_mean_one(importance: Tensors) -> Tensors:
    """Divide Omega by its mean over all elements of all tensors, so that mean(Omega) = 1.

    This makes the penalty strength independent of the loss scale (token-mean losses give
    tiny Fisher values). An all-zero Omega is returned unchanged.
    """
    count = sum(t.numel() for t in importance.values())
    total = sum(t.double().sum() for t in importance.values())
    if count == 0 or float(total) == 0.0:
        return {name: t.clone() for name, t in importance.items()}
    mean = float(total) / count
    return {name: t / mean for name, t in importance.items()}


def running_mean(average: Tensors | None, new: Tensors, count: int) -> Tensors:
    """Mean of ``count`` earlier importances (``average``) and ``new``: equal weight per task."""
    if average is None or count == 0:
        return {name: t.clone() for name, t in new.items()}
    return {name: average[name] + (new[name] - average[name]) / (count + 1) for name in new}


def to_device(tensors: Tensors | None, device: torch.device) -> Tensors | None:
    """Move a name->tensor map to ``device`` as fp32 (no copy when it is already there)."""
    if tensors is None:
        return None
    return {name: t.to(device=device, dtype=torch.float32) for name, t in tensors.items()}


def importance_batches(ctx: Context, batch_size: int, limit: int, purpose: str) -> Iterator[Batch]:
    """Batches of up to ``limit`` training samples of the current task, on ``ctx.device``.

    The subset is drawn uniformly without replacement, seeded by ``ctx.seed`` and
    ``purpose``, so a resumed run draws exactly what an uninterrupted one did.
    """
    samples = list(ctx.task.train)
    rng = random.Random(f"{purpose}/{ctx.seed}")
    chosen = rng.sample(samples, min(limit, len(samples)))
    for start in range(0, len(chosen), batch_size):
        yield ctx.collator.train_batch(chosen[start : start + batch_size]).to(ctx.device)


def answer_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Logits at positions that predict an answer token (next-token shift), shape (n, vocab)."""
    mask = labels[:, 1:] != IGNORE_INDEX
    return logits[:, :-1][mask].float()


def answer_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The training loss (token-mean NLL over answer tokens), exactly as the loop computes it."""
    # Imported here: the loop imports ``strategies.base``, which imports every strategy.
    from mcit.training.loop import answer_loss

    return answer_loss(logits, labels)


def parameter_grads(ctx: Context, value: torch.Tensor) -> Tensors:
    """fp32 gradients of ``value`` w.r.t. the trainable parameters (zeros where unused).

    Uses ``torch.autograd.grad`` so ``param.grad`` is left untouched.
    """
    named = ctx.trainable()
    grads = torch.autograd.grad(value, [p for _, p in named], allow_unused=True)
    return {
        name: (torch.zeros_like(p, dtype=torch.float32) if g is None else g.detach().float())
        for (name, p), g in zip(named, grads)
    }


def tensors_state(tensors: Tensors | None) -> dict[str, Any] | None:
    """A name->tensor map as a state-tree node (CPU copies happen in the store)."""
    return None if tensors is None else dict(tensors)


class Anchor:
    """theta* and Omega of a finished-task sequence, and the penalty they define.

    Attributes:
        theta_star: Trainable parameters (fp32) at the end of the last finished task.
        importance: Omega by parameter name (fp32), or ``None`` for Omega = 1.
        tasks: Finished tasks folded into ``importance`` so far.
    """

    def __init__(self) -> None:
        self.theta_star: Tensors | None = None
        self.importance: Tensors | None = None
        self.tasks = 0

    def penalty(self, ctx: Context) -> torch.Tensor | None:
        """``sum Omega (theta - theta*)^2``, or ``None`` before the first task has finished."""
        if self.theta_star is None:
            return None
        self.theta_star = to_device(self.theta_star, ctx.device)
        self.importance = to_device(self.importance, ctx.device)
        return quadratic_penalty(ctx, self.theta_star, self.importance)

    def penalised(self, ctx: Context, loss: torch.Tensor, scale: float) -> torch.Tensor:
        """``loss + scale * penalty``; ``loss`` unchanged before the first task has finished."""
        penalty = self.penalty(ctx)
        return loss if penalty is None else loss + scale * penalty

    def average_in(self, importance: Tensors) -> None:
        """Fold one finished task's Omega into the running mean over tasks."""
        self.importance = running_mean(self.importance, importance, self.tasks)
        self.tasks += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "theta_star": tensors_state(self.theta_star),
            "importance": tensors_state(self.importance),
            "tasks": self.tasks,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.theta_star = state.get("theta_star")
        self.importance = state.get("importance")
        self.tasks = int(state.get("tasks", 0))
