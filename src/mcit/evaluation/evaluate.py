"""Evaluate a task: generate its answers, score them with its scorer (and the paper-compatible
scorer it names), keep every sample's record."""

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
    """One task's answers and their scores.

    Attributes:
        task: The evaluated task.
        predictions: The generated answers, in the order of ``task.eval``.
        result: The score of the task's scorer (the accuracy-matrix entry).
        paper_result: The score of the task's ``paper_scorer`` on the same answers (the
            number its paper's evaluation script gives), or ``None`` when it names none.
    """

    task: Task
    predictions: list[str]
    result: TaskScore
    paper_result: TaskScore | None = None

    @property
    def score(self) -> float:
        return self.result.score

    @property
    def paper_score(self) -> float | None:
        return None if self.paper_result is None else self.paper_result.score

    def record(self) -> dict[str, Any]:
        """What a run directory keeps of it: the scores, their parts, and each sample's answer and scores."""
        paper = self.paper_result
        samples = []
        for index, (sample, prediction) in enumerate(zip(self.task.eval, self.predictions, strict=True)):
            entry = {"id": sample.id, "prediction": prediction, "references": list(sample.targets)}
            entry["score"] = self.result.per_sample[index]
            if paper is not None:
                entry["paper_score"] = paper.per_sample[index]
            samples.append(entry)
        record = {
            "task": self.task.name,
            "scorer": self.task.scorer,
            "score": self.result.score,
            "parts": self.result.parts,
            "notes": list(self.result.notes),
        }
        if paper is not None:
            record.update(
                paper_scorer=self.task.paper_scorer, paper_score=paper.score, paper_parts=paper.parts, paper_notes=list(paper.notes)
            )
        return {**record, "samples": samples}


def score_answers(scorer_name: str, task: Task, predictions: list[str]) -> TaskScore:
    """Score ``predictions`` to ``task.eval`` with the registered scorer ``scorer_name``."""
    scorer = SCORERS.get(scorer_name)
    sizes = [image_size(sample.images[0]) if sample.images else None for sample in task.eval] if scorer.needs_image_sizes else None
    context = {"samples": list(task.eval)} if scorer.needs_samples else {}
    return scorer.score(predictions, [sample.targets for sample in task.eval], sizes, **context)


def evaluate_task(
    model: torch.nn.Module,
    collator: Collator,
    task: Task,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    on_batch: Callable[[int], None] | None = None,
    world: World = SINGLE,
) -> TaskEvaluation:
    """Generate answers to ``task.eval`` and score them with the task's scorer (and its paper scorer).

    On several processes each generates the answers to its contiguous share of the samples
    (``on_batch`` counts those) and every process scores all of them, gathered in order.
    """
    share = generate_answers(model, collator, world.share(task.eval), task.max_new_tokens, batch_size, device, on_batch)
    predictions = world.gather(share)
    result = score_answers(task.scorer, task, predictions)
    paper = None if task.paper_scorer is None else score_answers(task.paper_scorer, task, predictions)
    return TaskEvaluation(task, predictions, result, paper)
