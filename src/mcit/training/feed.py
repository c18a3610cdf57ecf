"""What the loop feeds the model: the seeded batch order, micro-batches, and a DataLoader that collates ahead.

An optimizer step's samples come from :func:`batch_order`; with ``train.micro_batch_size``
they are split into micro-batches, each weighted by its share of the step's answer tokens
(the loss is a token mean, so the weighted sum of the micro-batch losses is the loss of the
whole batch, and so is its gradient). Collation (chat template, tokenisation, image decoding)
runs in ``train.num_workers`` DataLoader processes, which prepare the next steps while the
model computes; the batches, and so the result, are the same with any number of workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from mcit.data.collate import Batch
from mcit.data.sample import Sample
from mcit.losses import answer_tokens


def batch_order(n: int, batch_size: int, epochs: float, generator: torch.Generator) -> list[list[int]]:
    """Seeded shuffled batches; a fractional epoch count takes a prefix of the last epoch."""
    total = max(1, round(n * epochs))
    order: list[int] = []
    while len(order) < total:
        order.extend(torch.randperm(n, generator=generator).tolist())
    order = order[:total]
    return [order[i : i + batch_size] for i in range(0, total, batch_size)]


@dataclass
class MicroBatch:
    batch: Batch
    weight: float  # its share of the step's answer tokens (1.0 for a step of one micro-batch)

    def pin_memory(self) -> MicroBatch:
        return MicroBatch(self.batch.pin_memory(), self.weight)


class _Steps(Dataset):
    """Item ``k``: the collated micro-batches of ``batches[k]`` (one optimizer step)."""

    def __init__(self, collator, data: Sequence[Sample], batches: list[list[int]], micro_batch_size: int) -> None:
        self.collator, self.data, self.batches, self.micro = collator, data, batches, micro_batch_size

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> list[MicroBatch]:
        indices = self.batches[k]
        size = self.micro if 0 < self.micro < len(indices) else len(indices)
        # Samples stay out of the batch that crosses the process boundary; the loop puts them back.
        batches = [self.collator.train_batch([self.data[i] for i in indices[j : j + size]]) for j in range(0, len(indices), size)]
        batches = [Batch(b.inputs, b.labels, ()) for b in batches]
        if len(batches) == 1:
            return [MicroBatch(batches[0], 1.0)]
        tokens = [answer_tokens(b.labels) for b in batches]
        total = sum(tokens)
        return [MicroBatch(b, t / total if total else 1.0 / len(batches)) for b, t in zip(batches, tokens)]


def _as_is(item):
    return item


def step_loader(
    collator, data: Sequence[Sample], batches: list[list[int]], micro_batch_size: int, num_workers: int, pin_memory: bool
) -> DataLoader:
    """Each item: one optimizer step's :class:`MicroBatch` list, collated in order (in workers if any)."""
    return DataLoader(
        _Steps(collator, data, batches, micro_batch_size),
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_as_is,
        pin_memory=pin_memory,
        prefetch_factor=2 if num_workers else None,
    )


def with_samples(micro_batches: list[MicroBatch], data: Sequence[Sample], indices: list[int], device: torch.device) -> list[MicroBatch]:
    """The step's micro-batches on ``device`` (non-blocking from pinned memory), their samples restored."""
    result, start = [], 0
    for micro in micro_batches:
        count = micro.batch.labels.size(0)
        batch = micro.batch.to(device, non_blocking=True)
        result.append(MicroBatch(Batch(batch.inputs, batch.labels, [data[i] for i in indices[start : start + count]]), micro.weight))
        start += count
    return result
