"""What the loop feeds the model: the seeded batch order, micro-batches, and a DataLoader that collates ahead.

An optimizer step's samples come from :func:`batch_order`; with ``train.micro_batch_size``
they are split into micro-batches, each weighted by its share of the step's answer tokens
(the loss is a token mean, so the weighted sum of the micro-batch losses is the loss of the
whole batch, and so is its gradient). On several processes (:mod:`mcit.distributed`) each
takes its contiguous share of every step's batch, and the shares are over the answer tokens
of all processes, so the gradients summed over them are the whole batch's. Collation (chat
template, tokenisation, image decoding) runs in ``train.num_workers`` DataLoader processes,
which prepare the next steps while the model computes; the batches, and so the result, are
the same with any number of workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from mcit.data.collate import Batch
from mcit.data.sample import Sample
from mcit.distributed import World
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
    tokens: int  # its answer tokens
    weight: float = 1.0  # its share of the step's answer tokens (:func:`weigh`)
    pad: bool = False  # a repeat with no tokens that evens out the processes' forwards (:func:`pad_to`)

    def pin_memory(self) -> MicroBatch:
        return MicroBatch(self.batch.pin_memory(), self.tokens, self.weight, self.pad)


def weigh(micro_batches: list[MicroBatch], world: World) -> list[MicroBatch]:
    """Each micro-batch with its share of the answer tokens of the step's micro-batches on all processes.

    The shares sum to 1 over all processes, so a term that does not depend on the batch (a
    penalty) enters the summed gradient once. A step of one micro-batch on one process keeps
    weight 1; a step without answer tokens shares equally.
    """
    tokens, count = world.sum_counts([sum(m.tokens for m in micro_batches), len(micro_batches)])
    if count == 1:
        return micro_batches
    real = count if tokens else world.sum_counts([sum(not m.pad for m in micro_batches)])[0]
    return [
        MicroBatch(m.batch, m.tokens, 0.0 if m.pad else m.tokens / tokens if tokens else 1.0 / real, m.pad)
        for m in micro_batches
    ]


def micro_batch_count(samples: int, micro_batch_size: int) -> int:
    """How many micro-batches a share of ``samples`` samples is collated into (see ``_Steps``)."""
    return -(-samples // micro_batch_size) if 0 < micro_batch_size < samples else 1


def pad_to(micro_batches: list[MicroBatch], count: int) -> list[MicroBatch]:
    """``micro_batches`` followed by repeats of the last one, with no answer tokens and marked ``pad``, up to ``count``.

    With sharded parameters every forward is a collective, so every process runs the same
    number of them; a repeat without tokens gets weight 0 and adds nothing to the step.
    """
    last = micro_batches[-1]
    return micro_batches + [MicroBatch(last.batch, 0, 0.0, pad=True) for _ in range(count - len(micro_batches))]


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
        return [MicroBatch(Batch(b.inputs, b.labels, ()), answer_tokens(b.labels)) for b in batches]


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
        samples = [data[i] for i in indices[start : start + count]]
        result.append(MicroBatch(Batch(batch.inputs, batch.labels, samples), micro.tokens, micro.weight, micro.pad))
        start += count
    return result
