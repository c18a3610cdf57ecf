"""The training loop, written out once. Strategies hook into it; it never names a method."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mcit.data.sample import Sample
from mcit.errors import UserError
from mcit.losses import answer_loss
from mcit.strategies.base import Context, Strategy
from mcit.training.optim import build_optimizer, warmup_cosine
from mcit.training.settings import TrainConfig


@dataclass
class TrainStats:
    steps: int
    samples: int
    seconds: float
    final_loss: float
    skipped_batches: int = 0


class NonFiniteLossError(UserError):
    """The loss became NaN/inf; the task stops and nothing of it is committed."""


def steps_for(n: int, settings: TrainConfig) -> int:
    """Optimizer steps that :func:`train` takes on ``n`` samples."""
    return -(-max(1, round(n * settings.epochs)) // settings.batch_size)


def batch_order(n: int, batch_size: int, epochs: float, generator: torch.Generator) -> list[list[int]]:
    """Seeded shuffled batches; a fractional epoch count takes a prefix of the last epoch."""
    total = max(1, round(n * epochs))
    order: list[int] = []
    while len(order) < total:
        order.extend(torch.randperm(n, generator=generator).tolist())
    order = order[:total]
    return [order[i : i + batch_size] for i in range(0, total, batch_size)]


def optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's state as a state tree (its integer keys become a list)."""
    state = optimizer.state_dict()
    keys = sorted(state["state"])
    return {"keys": keys, "values": [state["state"][k] for k in keys], "param_groups": state["param_groups"]}


def load_optimizer_state(optimizer: torch.optim.Optimizer, tree: dict[str, Any]) -> None:
    """Inverse of :func:`optimizer_state`."""
    state = {int(k): dict(v) for k, v in zip(tree["keys"], tree["values"])}
    optimizer.load_state_dict({"state": state, "param_groups": tree["param_groups"]})


def train(
    ctx: Context,
    data: Sequence[Sample],
    strategy: Strategy,
    settings: TrainConfig,
    on_step: Callable[[int, int, float], None] | None = None,
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
    resume: dict[str, Any] | None = None,
) -> TrainStats:
    """Train ``ctx.model`` on ``data`` with the strategy's hooks.

    With ``settings.checkpoint_every`` = N > 0, ``on_checkpoint(progress)`` is called after
    every N-th optimizer step (not after the last): ``progress`` holds the step, the
    optimizer state and the torch RNG state, and the caller saves it with the model and
    strategy state. Passing it back as ``resume`` (after restoring the model and strategy)
    continues from that step exactly: the batch order and per-step seeds depend only on the
    task seed and the step, and the scheduler is advanced to the step.

    Args:
        ctx: Context (model, task view, seed, collator, device).
        data: Samples to train on (already passed through ``strategy.train_data``).
        strategy: Hooks (a single strategy or a chain).
        settings: Optimisation hyper-parameters.
        on_step: Progress callback ``(step, total_steps, loss)``.
        on_checkpoint: Receives the loop's progress for a mid-task checkpoint.
        resume: A progress dict given earlier to ``on_checkpoint``.

    Returns:
        Steps, samples seen, wall time and the last batch loss.

    Raises:
        UserError: If ``data`` is empty or the model has no trainable parameters.
    """
    if not data:
        raise UserError(f"task {ctx.task.name!r} has no training samples")
    params = [p for _, p in ctx.trainable()]
    if not params:
        raise UserError("the model has no trainable parameters; check model.trainable / model.lora")
    generator = torch.Generator().manual_seed(ctx.seed)
    batches = batch_order(len(data), settings.batch_size, settings.epochs, generator)
    optimizer = build_optimizer(params, settings.lr, settings.weight_decay)
    scheduler = warmup_cosine(
        optimizer, len(batches), max(1, int(settings.warmup_ratio * len(batches))), settings.min_lr_ratio
    )
    model = ctx.model
    model.train()
    start, loss_value, skipped, first, earlier_seconds = time.perf_counter(), math.nan, 0, 0, 0.0
    if resume is not None:
        load_optimizer_state(optimizer, resume["optimizer"])
        with warnings.catch_warnings():  # fast-forwarding the schedule takes no optimizer step
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(resume["step"]):
                scheduler.step()
        torch.set_rng_state(resume["rng"])
        first, skipped, loss_value = resume["step"], resume["skipped"], resume["loss"]
        earlier_seconds = resume["seconds"]
    for step, indices in enumerate(batches):
        if step < first:
            continue
        ctx.step = step
        batch = ctx.collator.train_batch([data[i] for i in indices]).to(ctx.device)
        outputs = model(**batch.inputs)
        loss = answer_loss(outputs.logits, batch.labels)
        loss = strategy.loss(ctx, batch, outputs, loss)
        if not torch.isfinite(loss):
            if settings.on_nonfinite != "skip":
                model.eval()
                raise NonFiniteLossError(
                    f"task {ctx.task.name!r}, step {step + 1}/{len(batches)}: the loss is {loss.item()}; "
                    "the task was stopped and the run keeps its last finished task. "
                    "Lower train.lr, or set train.on_nonfinite=skip to skip such batches"
                )
            skipped += 1
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            continue
        loss.backward()
        strategy.after_backward(ctx, batch)
        if settings.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = loss.item()
        every = settings.checkpoint_every
        if on_checkpoint is not None and every and (step + 1) % every == 0 and step + 1 < len(batches):
            on_checkpoint({
                "step": step + 1, "optimizer": optimizer_state(optimizer), "rng": torch.get_rng_state(),
                "skipped": skipped, "loss": loss_value, "seconds": earlier_seconds + time.perf_counter() - start,
            })
        if on_step is not None:
            on_step(step + 1, len(batches), loss_value)
    model.eval()
    seconds = earlier_seconds + time.perf_counter() - start
    return TrainStats(len(batches), sum(len(b) for b in batches), seconds, loss_value, skipped)
