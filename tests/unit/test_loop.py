"""The training loop on the tiny model: it learns, takes the steps it should, it is seeded."""

from __future__ import annotations

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from mcit.data.collate import Collator
from mcit.data.sample import Task
from mcit.data.synthetic.tasks import TASKS, corpus
from mcit.evaluation.evaluate import evaluate_task
from mcit.evaluation.scorers import SCORERS
from mcit.losses import answer_loss
from mcit.models.tiny import build_tiny_vlm
from mcit.strategies import Context, Strategy, TaskView
from mcit.training.feed import batch_order
from mcit.training.loop import steps_for, train
from mcit.training.optim import build_optimizer, warmup_cosine
from mcit.training.settings import TrainConfig


def test_batch_order_is_seeded_and_covers_fractional_epochs():
    a = batch_order(10, 4, 1.5, torch.Generator().manual_seed(1))
    b = batch_order(10, 4, 1.5, torch.Generator().manual_seed(1))
    c = batch_order(10, 4, 1.5, torch.Generator().manual_seed(2))
    assert a == b and a != c
    flat = [i for batch in a for i in batch]
    assert len(flat) == 15 and set(flat[:10]) == set(range(10))
    assert [len(batch) for batch in a] == [4, 4, 4, 3]  # round(10 * 1.5) = 15 samples in batches of 4
    assert steps_for(10, TrainConfig(epochs=1.5, batch_size=4)) == 4


def test_warmup_then_cosine_schedule():
    parameter = torch.nn.Parameter(torch.zeros(2, 2))
    optimizer = build_optimizer([parameter], lr=1.0, weight_decay=0.1)
    scheduler = warmup_cosine(optimizer, total_steps=10, warmup_steps=2, min_ratio=0.1)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == 0.5 and lrs[1] == 1.0
    assert all(x >= y for x, y in zip(lrs[1:], lrs[2:])) and lrs[-1] >= 0.1


class CountingSteps(Strategy):
    """Records every backward the loop takes (each is followed by one optimizer step)."""

    def __init__(self) -> None:
        super().__init__()
        self.batch_sizes: list[int] = []
        self.steps: list[int] = []

    def after_backward(self, ctx: Context, batch) -> None:
        self.batch_sizes.append(len(batch.samples))
        self.steps.append(ctx.step)


def test_loop_reduces_the_answer_loss_on_the_tiny_model():
    model, processor = build_tiny_vlm(corpus())
    collator = Collator(processor)
    samples = TASKS.get("color").generate(64, 0, "train") + TASKS.get("arithmetic").generate(32, 0, "train")
    batch = collator.train_batch(samples)

    def loss_now() -> float:
        with torch.no_grad():
            return answer_loss(model(**batch.inputs).logits, batch.labels).item()

    before = loss_now()
    ctx = Context(model, TaskView(0, "mixed", samples), 0, torch.device("cpu"), collator)
    settings = TrainConfig(epochs=10, batch_size=16, lr=2e-3)
    counter, optimizer_steps = CountingSteps(), []
    handle = register_optimizer_step_post_hook(lambda optimizer, args, kwargs: optimizer_steps.append(1))
    try:
        stats = train(ctx, samples, counter, settings)
    finally:
        handle.remove()
    # 96 samples x 10 epochs = 960 samples in batches of 16: 60 optimizer steps, all full.
    assert counter.batch_sizes == [16] * 60
    assert counter.steps == list(range(60))
    assert len(optimizer_steps) == 60
    assert stats.steps == 60 and steps_for(len(samples), settings) == 60
    assert stats.samples == 960
    assert loss_now() < 0.5 * before
    assert not model.training  # left in eval mode for evaluation


def test_evaluate_task_scores_generated_answers():
    model, processor = build_tiny_vlm(corpus())
    collator = Collator(processor)
    spec = TASKS.get("arithmetic")
    task = Task("arithmetic", [], spec.generate(6, 0, "eval"), max_new_tokens=3)
    evaluation = evaluate_task(model, collator, task, batch_size=4)
    predictions = evaluation.predictions
    assert len(predictions) == 6 and all(isinstance(p, str) for p in predictions)
    scorer = SCORERS.get(task.scorer)
    each = [scorer(p, s.targets) for p, s in zip(predictions, task.eval)]
    assert evaluation.score == sum(each) / 6
    record = evaluation.record()
    assert [row["score"] for row in record["samples"]] == each
    assert [row["id"] for row in record["samples"]] == [s.id for s in task.eval]
    assert [row["references"] for row in record["samples"]] == [list(s.targets) for s in task.eval]
