"""Batched greedy generation (left padding, KV cache) and scoring of evaluation sets."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from mcit.data.collate import Collator
from mcit.data.sample import Sample, Task
from mcit.evaluation.scorers import SCORERS


@torch.inference_mode()
def generate_answers(
    model: torch.nn.Module,
    collator: Collator,
    samples: Sequence[Sample],
    max_new_tokens: int,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """Greedy answers for ``samples``, decoded without special tokens and stripped."""
    model.eval()
    tokenizer = collator.tokenizer
    answers: list[str] = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        batch = collator.generate_batch(chunk).to(device)
        output = model.generate(
            **batch.inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            use_cache=True,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        new_tokens = output[:, batch.inputs["input_ids"].shape[1] :]
        answers.extend(text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
        if on_batch is not None:
            on_batch(len(chunk))
    return answers


def evaluate_task(
    model: torch.nn.Module,
    collator: Collator,
    task: Task,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    on_batch: Callable[[int], None] | None = None,
) -> tuple[float, list[str]]:
    """Score ``task.eval`` with the task's scorer; returns (mean score, predictions)."""
    scorer = SCORERS.get(task.scorer)
    predictions = generate_answers(model, collator, task.eval, task.max_new_tokens, batch_size, device, on_batch)
    scores = [scorer(p, s.targets) for p, s in zip(predictions, task.eval)]
    return sum(scores) / len(scores), predictions
