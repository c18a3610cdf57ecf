"""Evaluate a task: generate its answers, score them with its scorer, keep every sample's record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from mcit.data.collate import Collator
from mcit.data.images import image_size
from mcit.data.sample import Task
from mcit.distributed import SINGLE, World
from mcit.evaluation.generate import generate_answers
from mcit.evaluation.scorers import SCORERS, TaskScore


@dataclass(frozen=True)
class TaskEvaluation:
    """One task's answers and their score."""

    task: Task
    predictions: list[str]
    result: TaskScore

    @property
    def score(self) -> float:
        return self.result.score

    def record(self) -> dict[str, Any]:
        """What a run directory keeps of it: the score, its parts, and each sample's answer and score."""
        samples = [
            {"id": sample.id, "prediction": prediction, "references": list(sample.targets), "score": score}
            for sample, prediction, score in zip(self.task.eval, self.predictions, self.result.per_sample, strict=True)
        ]
        return {
            "task": self.task.name,
            "scorer": self.task.scorer,
            "score": self.result.score,
            "parts": self.result.parts,
            "notes": list(self.result.notes),
            "samples": samples,
        }


def evaluate_task(
    model: torch.nn.Module,
    collator: Collator,
    task: Task,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    on_batch: Callable[[int], None] | None = None,
    world: World = SINGLE,
) -> TaskEvaluation:
    """Generate answers to ``task.eval`` and score them with the task's scorer.

    On several processes each generates the answers to its contiguous share of the samples
    (``on_batch`` counts those) and every process scores all of them, gathered in order.
    """
    scorer = SCORERS.get(task.scorer)
    share = generate_answers(model, collator, world.shard(task.eval), task.max_new_tokens, batch_size, device, on_batch)
    predictions = world.gather(share)
    sizes = [image_size(sample.images[0]) if sample.images else None for sample in task.eval] if scorer.needs_image_sizes else None
    result = scorer.score(predictions, [sample.targets for sample in task.eval], sizes)
    return TaskEvaluation(task, predictions, result)
