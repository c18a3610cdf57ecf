"""LwF and soft targets on the digit model: what each does to the loss and to what is kept."""

from __future__ import annotations

import torch

from digit_model import DigitCollator, DigitLM
from mcit.data.sample import Sample
from mcit.losses import answer_loss, distillation_loss, soft_target_loss
from mcit.strategies import STRATEGIES, Context, TaskView
from mcit.training.loop import train
from mcit.training.settings import TrainConfig


def samples(task: str, shift: int) -> list[Sample]:
    return [Sample(f"{task}-{i}", str(i), str((i + shift) % 10), skill=task) for i in range(10)]


def train_two_tasks(method: str, **options):
    """Task a maps d -> d+1, task b maps d -> d+5; returns the model after a, after b, and b's data."""
    import copy

    model, collator = DigitLM(), DigitCollator()
    strategy = STRATEGIES.get(method)(STRATEGIES.get(method).options_class(**options))
    a, b = samples("a", 1), samples("b", 5)
    after_a = None
    for index, (name, data) in enumerate((("a", a), ("b", b))):
        ctx = Context(model, TaskView(index, name, data), seed=index, device=torch.device("cpu"), collator=collator)
        strategy.before_task(ctx)
        train(ctx, data, strategy, TrainConfig(epochs=30, batch_size=10, lr=0.05, warmup_ratio=0.0))
        strategy.after_task(ctx)
        after_a = copy.deepcopy(model) if after_a is None else after_a
    return after_a, model, collator, b


def drift(before, after, collator, data) -> float:
    """KL(before || after) on ``data``'s answer positions: how far the outputs moved."""
    batch = collator.train_batch(data)
    with torch.no_grad():
        return distillation_loss(after(**batch.inputs).logits, before(**batch.inputs).logits, batch.labels, 1.0).item()


def test_lwf_keeps_the_outputs_of_the_task_start_on_the_new_data():
    start, plain, collator, b = train_two_tasks("lwf", strength=0.0)
    start_lwf, distilled, _, _ = train_two_tasks("lwf", strength=5.0)
    assert drift(start_lwf, distilled, collator, b) < 0.5 * drift(start, plain, collator, b)
    # ... and pays for it on the new task, as the trade-off says.
    assert loss_on(distilled, collator, b) > loss_on(plain, collator, b)


def loss_on(model, collator, data) -> float:
    batch = collator.train_batch(data)
    with torch.no_grad():
        return answer_loss(model(**batch.inputs).logits, batch.labels).item()


def test_lwf_teacher_is_the_task_start_model_and_leaves_the_trained_weights_alone():
    import copy

    lwf = STRATEGIES.get("lwf")()
    model, collator = DigitLM(), DigitCollator()
    data = samples("a", 1)
    ctx = Context(model, TaskView(0, "a", data), seed=0, device=torch.device("cpu"), collator=collator)
    lwf.before_task(ctx)
    start = copy.deepcopy(model).eval()
    with torch.no_grad():  # the task trains: every trainable weight moves
        for param in model.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=torch.Generator().manual_seed(param.numel())))
    trained = copy.deepcopy(model)
    model.train()
    batch = collator.train_batch(data)
    lwf.before_forward(ctx, batch)
    teacher = lwf._teacher_logits
    with torch.no_grad():
        assert torch.equal(teacher, start(**batch.inputs).logits), "the teacher is the model of the task start"
        assert not torch.equal(teacher, trained(**batch.inputs).logits)
    assert model.training and all(torch.equal(p, q) for p, q in zip(model.parameters(), trained.parameters()))
    outputs = model(**batch.inputs)
    loss = answer_loss(outputs.logits, batch.labels)
    expected = loss + distillation_loss(outputs.logits, teacher, batch.labels, 2.0)
    assert torch.equal(lwf.loss(ctx, batch, outputs, loss), expected)
    assert torch.equal(lwf.loss(ctx, batch, outputs, loss), loss), "the teacher's logits serve the one forward they were taken for"
    lwf.after_task(ctx)
    assert lwf.teacher is None


def test_soft_targets_swap_only_the_task_term_of_the_chain_loss():
    strategy = STRATEGIES.get("soft_targets")(STRATEGIES.get("soft_targets").options_class(alpha=0.1))
    collator = DigitCollator()
    batch = collator.train_batch(samples("a", 1))
    logits = DigitLM()(**batch.inputs).logits
    outputs = type("Outputs", (), {"logits": logits})()
    penalty = torch.tensor(0.25)
    hard = answer_loss(logits, batch.labels)
    swapped = strategy.loss(None, batch, outputs, hard + penalty)
    assert torch.isclose(swapped, soft_target_loss(logits, batch.labels, 0.1) + penalty)
