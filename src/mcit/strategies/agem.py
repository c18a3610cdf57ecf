"""A-GEM: project the gradient so it does not increase the loss on an episodic memory."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from mcit.distributed import SINGLE, World
from mcit.losses import answer_loss
from mcit.seeds import derive_seed
from mcit.sharding import local
from mcit.strategies._buffer import BufferOptions, Buffers, ReplayBuffer
from mcit.strategies._importance import batch_part
from mcit.strategies.base import STRATEGIES, Context, Stage, Strategy


class AGEMOptions(BufferOptions):
    """Episodic memory (selector and sizes, as for er) plus the reference batch size."""

    reference_batch_size: int = Field(16, ge=1, description="Memory samples in the reference batch of each step.")


def agem_project_(grads: list[torch.Tensor], reference: list[torch.Tensor], world: World = SINGLE) -> None:
    """A-GEM's projection, in place, of gradient tensors against reference gradient tensors.

    The lists are treated as one vector each (as if flattened and concatenated), in fp32:
    ``g <- g - (g.g_ref / ||g_ref||^2) g_ref`` when ``g.g_ref < 0``, else ``g`` is left as
    it is. After projection ``g.g_ref = 0``: the step no longer increases the memory loss to
    first order. The coefficient is a Python float, so each tensor's update is computed in
    fp32 and rounded once to its dtype.

    Args:
        grads: Gradient of the current batch, g (overwritten).
        reference: Gradient of a memory batch, g_ref, laid out like ``grads``.
        world: With sharded parameters, the tensors are this process's shards and the dot
            products are summed over the processes' shards.
    """
    with torch.no_grad():
        dots = torch.stack([_dot(grads, reference), _dot(reference, reference)])
        world.sum_over_shards_([dots])
        dot, norm = dots.tolist()
        if dot < 0:
            torch._foreach_add_(grads, reference, alpha=-(dot / norm))


def _grads(params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    """Each parameter's gradient (zeros for a parameter without one)."""
    return [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]


def _dot(first: list[torch.Tensor], second: list[torch.Tensor]) -> torch.Tensor:
    """fp32 dot product of two tensor lists, as if each were flattened and concatenated."""
    return torch.stack([
        torch.dot(a.reshape(-1).float(), b.reshape(-1).float()) for a, b in zip(first, second)
    ]).sum()


def _reference_gradient(ctx: Context, params: list[torch.nn.Parameter], samples: list) -> list[torch.Tensor]:
    """The answer-token loss gradient of the reference batch (left in ``.grad``, which starts empty).

    On several processes each takes its part of the batch (:func:`batch_part`, as for a
    training step) and the gradients are summed over them (by FSDP's backward where the
    parameters are sharded): the gradient of the whole reference batch on every process.
    """
    batch, weight = batch_part(ctx, samples)
    loss = answer_loss(ctx.model(**batch.inputs).logits, batch.labels)
    (loss * weight if weight != 1.0 else loss).backward()
    reference = _grads(params)
    if not ctx.world.sharded:
        ctx.world.sum_tensors_(reference)
    return reference


@STRATEGIES.register("agem")
class AGEM(Strategy):
    """Averaged GEM (Chaudhry et al. 2019): gradient projection on an episodic memory.

    After each task a buffer selector (default ``random``, ``buffer_per_task`` = 200) keeps
    samples in the memory; they are not mixed into the training data. At every step with a
    non-empty memory, ``after_backward`` saves the batch gradient g (one vector over all
    trainable parameters, kept as the parameters' tensors), draws ``reference_batch_size``
    memory samples without replacement (seeded by the task seed and the step, so a resumed
    run draws the same batches), computes the answer-token loss gradient g_ref on them, and
    if ``g.g_ref < 0`` replaces g by ``g - (g.g_ref / ||g_ref||^2) g_ref``
    (:func:`agem_project_`). So every step costs two forward and two backward passes. The reference pass runs in the model's current (train) mode; gradient clipping
    in the loop applies to the projected gradient. On several processes the reference batch
    is split over them like a training batch (:func:`_reference_gradient`).
    """

    options_class = AGEMOptions
    options: AGEMOptions
    supports_sharding = True
    stages = {"after_backward": Stage.FINAL}  # the projection sees the gradient every other method has edited

    def __init__(self, options: AGEMOptions | None = None) -> None:
        super().__init__(options)
        self.memory = ReplayBuffer(self.options, purpose="agem")

    @property
    def buffers(self) -> Buffers:
        """Kept samples per finished task, in task order (in-process; see :class:`ReplayBuffer`)."""
        return self.memory.buffers()

    def after_backward(self, ctx: Context, batch) -> None:
        memory = self.memory.samples(ctx.lookup)
        if not memory:
            return
        params = [p for _, p in ctx.trainable()]
        if not params:
            return
        # Project the gradient tensors in place rather than flattening them into one vector
        # and splitting it back: the same projection, fewer copies.
        grads = _grads(params)
        for p in params:
            p.grad = None
        generator = torch.Generator().manual_seed(derive_seed("agem", ctx.seed, ctx.step))
        count = min(self.options.reference_batch_size, len(memory))
        chosen = torch.randperm(len(memory), generator=generator)[:count].tolist()
        reference = _reference_gradient(ctx, params, [memory[i] for i in chosen])
        agem_project_([local(g) for g in grads], [local(r) for r in reference], ctx.world)
        for p, grad in zip(params, grads):
            p.grad = grad

    def after_task(self, ctx: Context) -> None:
        self.memory.add_task(ctx.task.name, ctx.task.train, ctx.seed, ctx.lookup)

    def state_dict(self) -> dict[str, Any]:
        return self.memory.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state)
