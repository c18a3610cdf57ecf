"""Shared pieces of the regularization family (l2, ewc, mas, si); not a method itself.

Every method of the family adds ``scale * sum_i Omega_i (theta_i - theta*_i)^2`` over the
trainable parameters. This module holds what they share to estimate theta* and Omega: fp32
snapshots of the parameters, mean-1 normalisation of Omega, a running mean over tasks, and
seeded batches of a finished task's training samples for importance estimation.

The penalty itself is in :mod:`~mcit.strategies._penalty` (the per-step kernel) and
:mod:`~mcit.strategies._anchor` (theta* and Omega over the tasks).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import torch

from mcit.data.collate import Batch
from mcit.data.sample import Sample
from mcit.distributed import SINGLE, World
from mcit.losses import answer_tokens
from mcit.sharding import local, local_grads
from mcit.strategies.base import Context

Tensors = dict[str, torch.Tensor]


def snapshot(ctx: Context) -> Tensors:
    """Detached fp32 copies of the trainable parameters (this process's shards where sharded), by name, on their own device."""
    return {name: local(param).detach().float().clone() for name, param in ctx.trainable()}


def trainable_lists(ctx: Context) -> tuple[tuple[str, ...], list[torch.nn.Parameter]]:
    """Names and trainable parameters of ``ctx.model``, in the same (module) order."""
    named = ctx.trainable()
    return tuple(name for name, _ in named), [param for _, param in named]


def anchored(ctx: Context, theta_star: Tensors) -> tuple[tuple[str, ...], list[torch.nn.Parameter]]:
    """The trainable parameters that have a theta*, by name.

    A parameter that a method added since the last finished task (eproj's projector, olora's
    adapter of a new task) held nothing of the earlier tasks: it trains free of the penalty.
    """
    names, params = trainable_lists(ctx)
    kept = [(name, p) for name, p in zip(names, params) if name in theta_star]
    return tuple(name for name, _ in kept), [p for _, p in kept]


def normalise_mean_one(importance: Tensors, world: World = SINGLE) -> Tensors:
    """Divide Omega by its mean over all elements of all tensors, so that mean(Omega) = 1.

    This makes the penalty strength independent of the loss scale (token-mean losses give
    tiny Fisher values). An all-zero Omega is returned unchanged. With sharded parameters
    (``world.sharded``) the mean is over all processes' shards.
    """
    sums = torch.tensor(
        [float(sum(t.numel() for t in importance.values())), float(sum(t.double().sum() for t in importance.values()))],
        dtype=torch.float64,
    )
    world.sum_over_shards_([sums])
    count, total = sums.tolist()
    if count == 0 or float(total) == 0.0:
        return {name: t.clone() for name, t in importance.items()}
    mean = float(total) / count
    return {name: t / mean for name, t in importance.items()}


def running_mean(average: Tensors | None, new: Tensors, count: int) -> Tensors:
    """Mean of ``count`` earlier importances (``average``) and ``new``: equal weight per task.

    A parameter without an earlier importance (a module a method added for this task) had
    none for the earlier tasks, which it did not exist for: 0 in their mean.
    """
    if average is None or count == 0:
        return {name: t.clone() for name, t in new.items()}
    return {
        name: average[name] + (t - average[name]) / (count + 1) if name in average else t / (count + 1)
        for name, t in new.items()
    }


def to_device(tensors: Tensors | None, device: torch.device) -> Tensors | None:
    """Move a name->tensor map to ``device`` as fp32 (no copy when it is already there)."""
    if tensors is None:
        return None
    return {name: t.to(device=device, dtype=torch.float32) for name, t in tensors.items()}


def _chosen_batches(ctx: Context, batch_size: int, limit: int, purpose: str) -> list[list[Sample]]:
    """Up to ``limit`` training samples of the current task in batches, drawn uniformly without
    replacement, seeded by ``ctx.seed`` and ``purpose`` (a resumed run draws the same)."""
    samples = list(ctx.task.train)
    rng = random.Random(f"{purpose}/{ctx.seed}")
    chosen = rng.sample(samples, min(limit, len(samples)))
    return [chosen[start : start + batch_size] for start in range(0, len(chosen), batch_size)]


def importance_batches(ctx: Context, batch_size: int, limit: int, purpose: str) -> Iterator[Batch]:
    """Batches of up to ``limit`` training samples of the current task, on ``ctx.device`` (see :func:`_chosen_batches`)."""
    for samples in _chosen_batches(ctx, batch_size, limit, purpose):
        yield ctx.collator.train_batch(samples).to(ctx.device)


def importance_mean(
    ctx: Context, batch_size: int, limit: int, purpose: str, contribution: Callable[[Batch, float], Tensors]
) -> Tensors:
    """The mean of ``contribution(batch, weight)`` (fp32 tensors by trainable-parameter name) over the importance batches.

    ``contribution`` scales the loss it differentiates by ``weight``. On several processes
    (``ctx.world``) each computes its contiguous share of the batches (weight 1) and the sums
    are added over the processes, so every process gets the mean over all of them (up to
    float summation order) for its share of the work. With sharded parameters a gradient is
    a collective, so the processes go through every batch together, each with its part of
    it (:func:`batch_part`), and each gets the mean on its shards.
    """
    batches = _chosen_batches(ctx, batch_size, limit, purpose)
    assert batches, "a task has at least one training sample"
    world = ctx.world
    total: Tensors | None = None
    with torch.enable_grad():
        for samples in batches if world.sharded else world.share(batches):
            if world.sharded:
                batch, weight = batch_part(ctx, samples)
            else:
                batch, weight = ctx.collator.train_batch(samples).to(ctx.device), 1.0
            part = contribution(batch, weight)
            if total is None:
                total = part
            else:
                for name, tensor in part.items():
                    total[name].add_(tensor)
    if total is None:  # this process's share was empty
        total = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in ctx.trainable()}
    if not world.sharded:
        world.sum_tensors_(list(total.values()))
    return {name: tensor / len(batches) for name, tensor in total.items()}


def batch_part(ctx: Context, samples: list[Sample]) -> tuple[Batch, float]:
    """This process's part of a batch whose gradient all processes take together (on ``ctx.device``), and its loss's weight.

    Each process takes its contiguous share, weighted by its share of the batch's answer
    tokens, so the gradients summed over the processes are the whole batch's; a batch of
    fewer samples than processes is taken whole by each, with weight 1 / processes. One
    process takes the whole batch with weight 1.
    """
    world = ctx.world
    if not world.distributed:
        return ctx.collator.train_batch(samples).to(ctx.device), 1.0
    if len(samples) < world.size:
        return ctx.collator.train_batch(samples).to(ctx.device), 1.0 / world.size
    batch = ctx.collator.train_batch(world.share(samples))
    tokens = answer_tokens(batch.labels)
    (total,) = world.sum_counts([tokens])
    return batch.to(ctx.device), tokens / total if total else 1.0 / world.size


def parameter_grads(ctx: Context, value: torch.Tensor) -> Tensors:
    """fp32 gradients of ``value`` w.r.t. the trainable parameters (zeros where unused).

    Uses ``torch.autograd.grad`` so ``param.grad`` is left untouched. With sharded
    parameters the gradient is a collective of FSDP's backward: it goes through ``.grad``
    (empty outside a training step, and left empty) and is this process's shards, summed
    over the processes.
    """
    named = ctx.trainable()
    if ctx.world.sharded:
        value.backward()
        grads = {name: local_grads([p])[0].float().clone() for name, p in named}
        for _, p in named:
            p.grad = None
        return grads
    grads = torch.autograd.grad(value, [p for _, p in named], allow_unused=True)
    return {
        name: (torch.zeros_like(p, dtype=torch.float32) if g is None else g.detach().float())
        for (name, p), g in zip(named, grads)
    }


def tensors_state(tensors: Tensors | None) -> dict[str, Any] | None:
    """A name->tensor map as a state-tree node (CPU copies happen in the store)."""
    return None if tensors is None else dict(tensors)
