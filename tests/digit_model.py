"""A digit language model and its collator for strategy tests that need a real loss but no VLM."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from mcit.data.collate import IGNORE_INDEX, Batch


class DigitLM(torch.nn.Module):
    """Digit tokens -> logits; enough model for every method's hooks (TIR reads the embeddings)."""

    def __init__(self, vocab: int = 10) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.config = SimpleNamespace()
        self.embed = torch.nn.Embedding(vocab, 4)
        self.head = torch.nn.Linear(4, vocab)

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.embed

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.head(torch.tanh(self.embed(input_ids))))


class DigitCollator:
    """A sample's prompt and answer are one digit each: two tokens, the second is the answer.

    ``batches`` records the sample ids of every batch built, in order.
    """

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def train_batch(self, batch_samples) -> Batch:
        self.batches.append([s.id for s in batch_samples])
        ids = torch.tensor([[int(s.prompt), int(s.answer)] for s in batch_samples])
        labels = ids.clone()
        labels[:, 0] = IGNORE_INDEX
        return Batch({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, labels, batch_samples)
