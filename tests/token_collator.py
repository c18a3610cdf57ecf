"""A collator for the token-level toy models of the unit tests (no tokenizer, no images)."""

from __future__ import annotations

import torch

from mcit.data.collate import IGNORE_INDEX, Batch


class TokenCollator:
    """A "sample" is (prompt ids, answer ids); labels are -100 on the prompt, right-padded."""

    def train_batch(self, samples) -> Batch:
        rows = [list(p) + list(a) for p, a in samples]
        labels = [[IGNORE_INDEX] * len(p) + list(a) for p, a in samples]
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
        labels = torch.tensor([r + [IGNORE_INDEX] * (width - len(r)) for r in labels])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        return Batch({"input_ids": ids, "attention_mask": mask}, labels, samples)
