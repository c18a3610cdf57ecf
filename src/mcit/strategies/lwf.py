"""Learning without Forgetting: distil the model of the task's start on the new task's answers."""

from __future__ import annotations

import copy
from typing import Any

import torch
from pydantic import Field

from mcit.data.collate import Batch
from mcit.losses import distillation_loss
from mcit.strategies.base import STRATEGIES, Context, Strategy, StrategyOptions


class LwFOptions(StrategyOptions):
    strength: float = Field(1.0, ge=0, description="lambda in L_task + lambda * T^2 * KL(teacher || student) (our choice: 1).")
    temperature: float = Field(2.0, gt=0, description="Softmax temperature T of teacher and student (our choice: 2).")


@STRATEGIES.register("lwf")
class LwF(Strategy):
    """LwF on answer tokens: the teacher is the model as it was when the task began.

    Loss = task loss + ``strength * T^2 * KL(softmax(z_teacher / T) || softmax(z / T))``,
    token mean over the answer positions of the current batch. The teacher is a frozen copy
    of the model taken before the task's first step (for the first task: the base model), so
    it costs one extra forward pass per step and a second copy of the model in memory. It is
    derived, not stored: on resume the runner calls ``before_task`` with the model of the
    last finished task, before a mid-task checkpoint is loaded, so the teacher is the same.
    """

    options_class = LwFOptions
    options: LwFOptions

    def __init__(self, options: LwFOptions | None = None) -> None:
        super().__init__(options)
        self.teacher: torch.nn.Module | None = None

    def before_task(self, ctx: Context) -> None:
        self.teacher = copy.deepcopy(ctx.model).eval()
        for param in self.teacher.parameters():
            param.requires_grad_(False)

    def loss(self, ctx: Context, batch: Batch, outputs: Any, loss: torch.Tensor) -> torch.Tensor:
        if self.teacher is None or self.options.strength == 0:
            return loss
        with torch.no_grad():
            teacher_logits = self.teacher(**batch.inputs).logits
        kd = distillation_loss(outputs.logits, teacher_logits, batch.labels, self.options.temperature)
        return loss + self.options.strength * kd

    def after_task(self, ctx: Context) -> None:
        self.teacher = None  # free the copy; the next task takes its own
