"""Answer-token losses: what the training loop minimises and what strategies reuse.

Every loss here is a token mean over the assistant's tokens only (``labels != -100``) with
the next-token shift, so a strategy that needs "the task loss" of another batch (A-GEM's
reference gradient, EWC's per-sample Fisher) computes exactly what the loop trains on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mcit.data.collate import IGNORE_INDEX


def answer_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Token-mean cross-entropy over answer tokens (labels != -100), next-token shifted."""
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    return F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1), ignore_index=IGNORE_INDEX
    )
