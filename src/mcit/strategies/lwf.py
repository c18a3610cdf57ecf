"""Learning without Forgetting: distil the model of the task's start on the new task's answers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from pydantic import Field

from mcit.data.collate import Batch
from mcit.losses import distillation_loss
from mcit.sharding import local, reshard
from mcit.strategies.base import STRATEGIES, Context, Strategy, StrategyOptions


class LwFOptions(StrategyOptions):
    strength: float = Field(1.0, ge=0, description="lambda in L_task + lambda * T^2 * KL(teacher || student) (our choice: 1).")
    temperature: float = Field(2.0, gt=0, description="Softmax temperature T of teacher and student (our choice: 2).")


@STRATEGIES.register("lwf")
class LwF(Strategy):
    """LwF on answer tokens: the teacher is the model as it was when the task began.

    Loss = task loss + ``strength * T^2 * KL(softmax(z_teacher / T) || softmax(z / T))``,
    token mean over the answer positions of the current batch. The teacher differs from the
    model only in its trainable weights, so the strategy keeps a copy of those from before
    the task's first step (for the first task: the base model's) and, before each forward
    of the model, runs the model once more without gradients with that copy swapped in
    (eval mode, the step's autocast) and swaps the trained weights back. That costs one
    extra forward pass per micro-batch and one copy of the trainable weights (with LoRA:
    of the adapters), not a second model; on sharded parameters (FSDP2) the copy is this
    process's shards and the teacher's forward gathers them like any other. It is
    derived, not stored: on resume the runner calls ``before_task`` with the model of the
    last finished task, before a mid-task checkpoint is loaded, so the teacher is the same.
    """

    options_class = LwFOptions
    options: LwFOptions
    supports_sharding = True

    def __init__(self, options: LwFOptions | None = None) -> None:
        super().__init__(options)
        self.teacher: list[torch.Tensor] | None = None  # the trainable weights at the task start (this process's shards)
        self._teacher_logits: torch.Tensor | None = None  # of the micro-batch the model is about to run

    def before_task(self, ctx: Context) -> None:
        self.teacher = [local(p).detach().clone() for _, p in ctx.trainable()]

    def before_forward(self, ctx: Context, batch: Batch) -> None:
        self._teacher_logits = None
        if self.teacher is None or self.options.strength == 0:
            return
        with torch.no_grad(), _swapped_in(ctx, self.teacher):
            self._teacher_logits = ctx.model(**batch.inputs).logits

    def loss(self, ctx: Context, batch: Batch, outputs: Any, loss: torch.Tensor) -> torch.Tensor:
        teacher_logits, self._teacher_logits = self._teacher_logits, None
        if teacher_logits is None:
            return loss
        kd = distillation_loss(outputs.logits, teacher_logits, batch.labels, self.options.temperature)
        return loss + self.options.strength * kd

    def after_task(self, ctx: Context) -> None:
        self.teacher = self._teacher_logits = None  # free the copy; the next task takes its own


@contextlib.contextmanager
def _swapped_in(ctx: Context, weights: list[torch.Tensor]) -> Iterator[None]:
    """The model in eval mode with ``weights`` in its trainable parameters (their shards where
    sharded); the trained values and the mode are restored, and gathered weights freed, after."""
    model = ctx.model
    params = [local(p) for _, p in ctx.trainable()]
    trained = [p.detach().clone() for p in params]
    training = model.training
    reshard(model)  # a unit still gathered would run its trained weights
    torch._foreach_copy_(params, weights)
    model.eval()
    try:
        yield
    finally:
        reshard(model)  # the root unit keeps its teacher weights gathered after a forward without backward
        torch._foreach_copy_(params, trained)
        model.train(training)
