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


def answer_mask(labels: torch.Tensor) -> torch.Tensor:
    """Which next-token-shifted positions are answer tokens: what every loss here averages over."""
    return labels[:, 1:] != IGNORE_INDEX


def answer_tokens(labels: torch.Tensor) -> int:
    """How many tokens the answer losses average over (weights micro-batches of one step)."""
    return int(answer_mask(labels).sum())


def answer_positions(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, gold ids) at the answer tokens, next-token shifted: shapes (tokens, vocab), (tokens,)."""
    keep = answer_mask(labels)
    return logits[:, :-1].float()[keep], labels[:, 1:][keep]


def soft_target_loss(logits: torch.Tensor, labels: torch.Tensor, alpha: float) -> torch.Tensor:
    """Token-mean cross-entropy against soft targets over answer tokens.

    The target puts ``1 - alpha`` on the gold token and ``alpha / (N - 1)`` on each of the
    other ``N - 1`` tokens of the vocabulary (N = vocab size), as Srivastava et al. define it.
    This is not torch's ``label_smoothing=alpha``, which gives the gold token
    ``1 - alpha + alpha / N``. With ``alpha = 0`` it equals :func:`answer_loss`.
    """
    answer_logits, gold = answer_positions(logits, labels)
    if gold.numel() == 0:
        return logits.sum() * 0.0
    log_probs = F.log_softmax(answer_logits, dim=-1)
    gold_log_prob = log_probs.gather(1, gold[:, None]).squeeze(1)
    others = log_probs.sum(dim=-1) - gold_log_prob
    vocab = answer_logits.size(-1)
    return -((1.0 - alpha) * gold_log_prob + alpha / (vocab - 1) * others).mean()


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, token mean over answer tokens."""
    student, _ = answer_positions(logits, labels)
    teacher, _ = answer_positions(teacher_logits, labels)
    if student.numel() == 0:
        return logits.sum() * 0.0
    log_student = F.log_softmax(student / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher / temperature, dim=-1)
    kl = (log_teacher.exp() * (log_teacher - log_student)).sum(dim=-1)
    return temperature**2 * kl.mean()
