"""The training loop, written out once. Strategies hook into it; it never names a method."""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mcit.data.sample import Sample
from mcit.distributed import World
from mcit.errors import UserError
from mcit.losses import answer_loss
from mcit.sharding import ParameterUse, host_copy, shard_like
from mcit.strategies.base import Context, Strategy
from mcit.training.feed import MicroBatch, batch_order, micro_batch_count, pad_to, step_loader, weigh, with_samples
from mcit.training.optim import build_optimizer, warmup_cosine
from mcit.training.precision import MasterWeights, autocast
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


def optimizer_state(optimizer: torch.optim.Optimizer, keep: bool = True) -> dict[str, Any]:
    """The optimizer's state as a state tree (its integer keys become a list): CPU copies, whole where
    sharded and gathered one at a time (:func:`mcit.sharding.host_copy`); ``None`` in their place where not ``keep``."""
    state = optimizer.state_dict()
    keys = sorted(state["state"])
    values = [{name: host_copy(value, keep) if torch.is_tensor(value) else value for name, value in state["state"][k].items()} for k in keys]
    return {"keys": keys, "values": values, "param_groups": state["param_groups"]}


def load_optimizer_state(optimizer: torch.optim.Optimizer, tree: dict[str, Any]) -> None:
    """Inverse of :func:`optimizer_state` (sharded again like the parameters where they are sharded)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state = {
        int(k): {name: shard_like(value, params[int(k)]) for name, value in v.items()}
        for k, v in zip(tree["keys"], tree["values"])
    }
    optimizer.load_state_dict({"state": state, "param_groups": tree["param_groups"]})


def train(
    ctx: Context,
    data: Sequence[Sample],
    strategy: Strategy,
    settings: TrainConfig,
    on_step: Callable[[int, int, float | None], None] | None = None,
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
    resume: dict[str, Any] | None = None,
) -> TrainStats:
    """Train ``ctx.model`` on ``data`` with the strategy's hooks.

    Each optimizer step takes ``settings.batch_size`` samples, in micro-batches of
    ``settings.micro_batch_size`` if set (gradients accumulated, weighted by answer tokens),
    split over the processes of ``ctx.world`` if several (each takes its share of every
    step's batch; gradients are summed over them before ``after_backward``: by one
    all-reduce here, or by FSDP's reduce-scatter where the parameters are sharded, when every
    process runs the same number of micro-batches and a parameter no process ran keeps no
    gradient),
    under bf16 autocast if ``settings.mixed_precision`` says so, and on fp32 master weights
    when the model's weights are low precision (:mod:`mcit.training.precision`). The loss is
    read back from the device every ``settings.loss_every`` steps, before each checkpoint and
    at the end; a non-finite loss found then stops the task (nothing non-finite is ever handed
    to ``on_checkpoint``), unless ``on_nonfinite`` is ``skip``, which checks every step.

    With ``settings.checkpoint_every`` = N > 0, ``on_checkpoint(progress)`` is called after
    every N-th optimizer step (not after the last): ``progress`` holds the step, the
    optimizer state, the torch (and CUDA) RNG state and any master weights, and the caller
    saves it with the model and strategy state. Passing it back as ``resume`` (after
    restoring the model and strategy) continues from that step exactly: the batch order and
    per-step seeds depend only on the task seed and the step, and the scheduler is advanced
    to the step.

    Args:
        ctx: Context (model, task view, seed, collator, device).
        data: Samples to train on (already passed through ``strategy.train_data``).
        strategy: Hooks (a single strategy or a chain).
        settings: Optimisation hyper-parameters.
        on_step: Progress callback ``(step, total_steps, loss)``; ``loss`` is ``None`` on
            steps where it was not read back.
        on_checkpoint: Receives the loop's progress for a mid-task checkpoint.
        resume: A progress dict given earlier to ``on_checkpoint``.

    Returns:
        Steps, samples seen, wall time and the last batch loss.

    Raises:
        UserError: If ``data`` is empty, the model has no trainable parameters, or a step
            has fewer samples than there are processes.
        NonFiniteLossError: If the loss became NaN/inf (``on_nonfinite: stop``).
    """
    if not data:
        raise UserError(f"task {ctx.task.name!r} has no training samples")
    params = [p for _, p in ctx.trainable()]
    if not params:
        raise UserError("the model has no trainable parameters; check model.trainable / model.lora")
    masters = MasterWeights(params, settings.master_weights)
    generator = torch.Generator().manual_seed(ctx.seed)
    batches = batch_order(len(data), settings.batch_size, settings.epochs, generator)
    world = ctx.world
    if world.size > min(len(b) for b in batches):
        raise UserError(
            f"task {ctx.task.name!r}: a step of {min(len(b) for b in batches)} samples cannot be split over "
            f"{world.size} processes; use a train.batch_size (and task size) of at least one sample per process"
        )
    optimizer = build_optimizer(masters.optimizer_params, settings.lr, settings.weight_decay)
    scheduler = warmup_cosine(
        optimizer, len(batches), max(1, int(settings.warmup_ratio * len(batches))), settings.min_lr_ratio
    )
    model = ctx.model
    start, first, skipped, earlier_seconds = time.perf_counter(), 0, 0, 0.0
    losses = _LossReader(ctx.task.name, len(batches))
    if resume is not None:
        load_optimizer_state(optimizer, resume["optimizer"])
        with warnings.catch_warnings():  # fast-forwarding the schedule takes no optimizer step
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(resume["step"]):
                scheduler.step()
        torch.set_rng_state(resume["rng"])
        if "cuda_rng" in resume and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(list(resume["cuda_rng"]))
        if masters:
            masters.load_state(list(resume["masters"]))
        first, skipped, losses.value = resume["step"], resume["skipped"], resume["loss"]
        earlier_seconds = resume["seconds"]
    shares = [world.share(b) for b in batches]
    # With sharded parameters each forward is a collective: every process runs the step's
    # largest share's number of micro-batches, and which parameters ran is tracked.
    forwards = [micro_batch_count(-(-len(b) // world.size), settings.micro_batch_size) for b in batches]
    use = ParameterUse(model) if world.sharded else None
    loader = step_loader(
        ctx.collator, data, shares[first:], settings.micro_batch_size, settings.num_workers, ctx.device.type == "cuda"
    )
    model.train()
    try:
        with gradient_checkpointing(model, settings.gradient_checkpointing):
            for step, collated in enumerate(loader, start=first):
                ctx.step = step
                micro_batches = with_samples(collated, data, shares[step], ctx.device)
                if use is not None:
                    micro_batches = pad_to(micro_batches, forwards[step])
                micro_batches = weigh(micro_batches, world)
                step_loss = _forward_backward(ctx, strategy, micro_batches, settings, use)
                if use is not None:  # FSDP summed the gradients in its backward
                    step_loss = _summed(world, step_loss)
                    use.drop_unused_(world)
                elif world.distributed:
                    step_loss = _sum_over_processes(world, params, step_loss)
                if settings.on_nonfinite == "skip" and not torch.isfinite(step_loss):
                    skipped += 1
                    model.zero_grad(set_to_none=True)
                    optimizer.zero_grad(set_to_none=True)
                    scheduler.step()
                    continue
                strategy.after_backward(ctx, micro_batches[-1].batch)
                masters.gradients_to_masters()
                if settings.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(masters.optimizer_params, settings.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                masters.masters_to_model()
                losses.add(step, step_loss)
                every = settings.checkpoint_every
                checkpoint = on_checkpoint is not None and every and (step + 1) % every == 0 and step + 1 < len(batches)
                read = checkpoint or (step + 1) % settings.loss_every == 0 or step + 1 == len(batches)
                loss_value = losses.read() if read else None  # raises on a non-finite loss
                if checkpoint:
                    on_checkpoint(_progress(step + 1, optimizer, masters, skipped, losses.value, earlier_seconds + time.perf_counter() - start, ctx.world.is_main))
                if on_step is not None:
                    on_step(step + 1, len(batches), loss_value)
        losses.read()  # what is still pending when the last step was skipped
    finally:
        model.eval()
        if use is not None:
            use.close()
    seconds = earlier_seconds + time.perf_counter() - start
    return TrainStats(len(batches), sum(len(b) for b in batches), seconds, losses.value, skipped)


def _forward_backward(
    ctx: Context, strategy: Strategy, micro_batches: list[MicroBatch], settings: TrainConfig, use: ParameterUse | None = None
) -> torch.Tensor:
    """Forward and backward of one step's micro-batches; returns the step's loss (detached, on the device).

    With sharded parameters (``use``), ``ctx.shard_weight`` is set to this process's
    micro-batches' weights, summed, and padding micro-batches do not count as using parameters.
    """
    total = None
    if use is not None:
        ctx.shard_weight = sum(m.weight for m in micro_batches)
    for index, micro in enumerate(micro_batches):
        ctx.micro_batch = index
        batch = micro.batch
        if use is not None:
            use.recording = not micro.pad
        with autocast(settings.mixed_precision, ctx.device):
            strategy.before_forward(ctx, batch)
            outputs = ctx.model(**batch.inputs)
            loss = answer_loss(outputs.logits, batch.labels)
            loss = strategy.loss(ctx, batch, outputs, loss)
        if micro.weight != 1.0:
            loss = loss * micro.weight
        loss.backward()
        total = loss.detach() if total is None else total + loss.detach()
    ctx.micro_batch = 0
    return total


def _summed(world: World, step_loss: torch.Tensor) -> torch.Tensor:
    """The step's loss summed over the processes (the gradients FSDP has summed already)."""
    total = step_loss.float().reshape(1)
    world.sum_tensors_([total])
    return total[0]


def _sum_over_processes(world: World, params: list[torch.nn.Parameter], step_loss: torch.Tensor) -> torch.Tensor:
    """Sum the step's gradients and loss over the processes; returns the loss of the whole step.

    A parameter without a gradient on every process (e.g. the vision tower when no process's
    share held an image) keeps none, as on one process, so AdamW leaves it alone.
    """
    present = world.sum_counts([p.grad is not None for p in params])
    grads = []
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    total = step_loss.float().reshape(1)
    world.sum_tensors_([*grads, total])
    for p, count in zip(params, present):
        if count == 0:
            p.grad = None
    return total[0]


def _progress(step, optimizer, masters: MasterWeights, skipped: int, loss: float, seconds: float, keep: bool) -> dict[str, Any]:
    """The loop's state for a mid-task checkpoint; its tensors only where ``keep`` (the process that writes)."""
    progress = {
        "step": step, "optimizer": optimizer_state(optimizer, keep), "rng": torch.get_rng_state(),
        "skipped": skipped, "loss": loss, "seconds": seconds,
    }
    if torch.cuda.is_available():
        progress["cuda_rng"] = torch.cuda.get_rng_state_all()
    if masters:
        progress["masters"] = masters.state(keep)
    return progress


class _LossReader:
    """Step losses kept on the device until read: one host sync per read, not per step."""

    def __init__(self, task: str, steps: int) -> None:
        self.task, self.steps = task, steps
        self.pending: list[tuple[int, torch.Tensor]] = []
        self.value = math.nan  # the last loss read

    def add(self, step: int, loss: torch.Tensor) -> None:
        self.pending.append((step, loss))

    def read(self) -> float:
        """The latest step's loss; raises :class:`NonFiniteLossError` if any pending one is not finite."""
        if not self.pending:
            return self.value
        values = torch.stack([loss.float() for _, loss in self.pending]).tolist()
        steps = [step for step, _ in self.pending]
        self.pending.clear()
        for step, value in zip(steps, values):
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"task {self.task!r}, step {step + 1}/{self.steps}: the loss is {value}; "
                    "the task was stopped and the run keeps its last finished task. "
                    "Lower train.lr, or set train.on_nonfinite=skip to skip such batches"
                )
        self.value = values[-1]
        return self.value


@contextlib.contextmanager
def gradient_checkpointing(model: torch.nn.Module, enabled: bool):
    """Hugging Face gradient checkpointing (non-reentrant) while training, switched off after."""
    if not enabled:
        yield
        return
    if not getattr(model, "supports_gradient_checkpointing", False) or not hasattr(model, "gradient_checkpointing_enable"):
        raise UserError(
            f"train.gradient_checkpointing: {type(model).__name__} does not support gradient checkpointing; "
            "set it to false"
        )
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers 5's name (the old one is deprecated)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        disable = model.activation_checkpointing_disable
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        disable = model.gradient_checkpointing_disable
    try:
        yield
    finally:
        disable()
