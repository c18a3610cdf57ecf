"""The answer-token loss: only assistant tokens count, next-token shifted, token-mean."""

from __future__ import annotations

import math

import torch

from mcit.losses import answer_loss


def test_answer_loss_ignores_prompt_positions():
    logits = torch.zeros(1, 4, 5)
    logits[0, 2, 3] = 10.0  # position 2 predicts token 3 (the label at position 3)
    labels = torch.tensor([[-100, -100, -100, 3]])
    confident = answer_loss(logits, labels)
    logits[0, 0] = torch.randn(5) * 50  # prompt positions must not matter
    assert torch.isclose(answer_loss(logits, labels), confident)
    assert confident.item() < 1e-3


def test_answer_loss_is_the_mean_over_answer_tokens_of_the_whole_batch():
    # Uniform logits: every answer token costs log(vocab); one confident token costs ~0.
    logits = torch.zeros(2, 3, 4)
    logits[1, 1, 2] = 30.0
    labels = torch.tensor([[-100, 1, 0], [-100, -100, 2]])  # three answer tokens in all
    assert math.isclose(answer_loss(logits, labels).item(), 2 * math.log(4) / 3, rel_tol=1e-6)
