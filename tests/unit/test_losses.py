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


def test_soft_targets_put_alpha_over_the_other_tokens_not_torch_label_smoothing():
    from mcit.losses import soft_target_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6)
    labels = torch.tensor([[-100, -100, 2, 5], [-100, 1, -100, -100]])
    alpha = 0.1
    # By hand: target = 1 - alpha on the gold token, alpha / (N - 1) on each other token.
    shift, gold = logits[:, :-1].reshape(-1, 6), labels[:, 1:].reshape(-1)
    keep = gold != -100
    log_p = torch.log_softmax(shift[keep], dim=-1)
    target = torch.full_like(log_p, alpha / 5)
    target[torch.arange(len(log_p)), gold[keep]] = 1 - alpha
    expected = -(target * log_p).sum(-1).mean()
    assert torch.isclose(soft_target_loss(logits, labels, alpha), expected)
    assert torch.isclose(soft_target_loss(logits, labels, 0.0), answer_loss(logits, labels))
    smoothed = torch.nn.functional.cross_entropy(shift, gold, ignore_index=-100, label_smoothing=alpha)
    assert not torch.isclose(soft_target_loss(logits, labels, alpha), smoothed)  # gold gets 1-a+a/N there


def test_distillation_is_zero_against_itself_and_pulls_towards_the_teacher():
    from mcit.losses import distillation_loss

    torch.manual_seed(1)
    teacher = torch.randn(1, 5, 7)
    labels = torch.tensor([[-100, -100, 3, 4, 1]])
    assert distillation_loss(teacher, teacher, labels, 2.0).item() < 1e-6
    student = torch.randn(1, 5, 7, requires_grad=True)
    loss = distillation_loss(student, teacher, labels, 2.0)
    assert loss.item() > 0
    loss.backward()
    with torch.no_grad():
        closer = distillation_loss(student - 0.5 * student.grad, teacher, labels, 2.0)
    assert closer < loss
    # Prompt positions do not count.
    other = teacher.clone()
    other[0, 0] += 100.0
    assert distillation_loss(other, teacher, labels, 2.0).item() < 1e-6


def test_distillation_is_the_kl_of_the_student_from_the_teacher():
    """LwF's term is KL(teacher || student) (the teacher's distribution weighs the log ratio), not
    the reverse: on two distributions where the directions differ, it equals the forward one."""
    from mcit.losses import distillation_loss

    labels = torch.tensor([[-100, 0, -100]])  # one answer token: the logits at position 0 predict it
    teacher = torch.zeros(1, 3, 3)
    student = torch.zeros(1, 3, 3)
    teacher[0, 0] = torch.tensor([4.0, 0.0, 0.0])  # peaked
    student[0, 0] = torch.tensor([0.0, 1.0, 0.5])  # spread, mass elsewhere
    p, q = torch.softmax(teacher[0, 0], -1), torch.softmax(student[0, 0], -1)
    forward, reverse = (p * (p / q).log()).sum(), (q * (q / p).log()).sum()
    assert abs(forward - reverse) > 0.1, "the premise: the two directions differ here"
    torch.testing.assert_close(distillation_loss(student, teacher, labels, 1.0), forward)
