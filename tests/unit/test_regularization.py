"""The regularization family (l2, ewc, mas, si) on a bigram model whose gradients are known."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from mcit.losses import answer_loss
from mcit.state_tree import load_state_tree, save_state_tree
from mcit.strategies import STRATEGIES, Context, TaskView
from mcit.strategies._anchor import Anchor
from mcit.strategies._importance import normalise_mean_one, snapshot
from mcit.strategies.ewc import EWC, EWCOptions, fisher_diagonal
from mcit.strategies.mas import MASOptions, output_sensitivity
from mcit.strategies.si import SI, SIOptions
from token_collator import TokenCollator

VOCAB = 6


class Bigram(torch.nn.Module):
    """logits[t] = table[input_ids[t]]: the NLL gradient w.r.t. the table is known in closed form."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(VOCAB, VOCAB, generator=torch.Generator().manual_seed(seed)))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> SimpleNamespace:
        return SimpleNamespace(logits=self.table[input_ids])


SAMPLES_A = [((1, 2), (3, 4)), ((2, 5), (1,)), ((4, 0, 3), (2, 2)), ((5,), (0, 1, 3))]
SAMPLES_B = [((3, 1), (5,)), ((0, 4), (4, 2)), ((1, 1, 2), (3,))]


def context(model: torch.nn.Module, samples, index: int = 0) -> Context:
    view = TaskView(index, f"task{index}", samples)
    return Context(model, view, seed=index, device=torch.device("cpu"), collator=TokenCollator())


def hand_gradient(table: torch.Tensor, sample) -> torch.Tensor:
    """d(token-mean NLL over answer tokens)/d table: row x_t gets (softmax - onehot(y)) / n."""
    prompt, answer = sample
    ids = list(prompt) + list(answer)
    grad = torch.zeros_like(table)
    positions = range(len(prompt) - 1, len(ids) - 1)  # position t predicts ids[t + 1]
    for t in positions:
        p = torch.softmax(table[ids[t]].detach(), -1)
        p[ids[t + 1]] -= 1
        grad[ids[t]] += p / len(positions)
    return grad


def anchor_penalty(ctx: Context, theta_star, importance) -> torch.Tensor:
    """The penalty the family adds, from an :class:`Anchor` holding theta* and Omega."""
    anchor = Anchor()
    anchor.theta_star, anchor.importance = theta_star, importance
    return anchor.penalty(ctx)


def test_penalty_is_zero_at_the_anchor_and_matches_a_hand_computed_value():
    model = Bigram()
    ctx = context(model, SAMPLES_A)
    anchor = snapshot(ctx)
    omega = {"table": torch.arange(VOCAB * VOCAB, dtype=torch.float32).reshape(VOCAB, VOCAB)}
    assert anchor_penalty(ctx, anchor, omega).item() == 0.0
    with torch.no_grad():
        model.table[1, 2] += 0.5  # omega 8
        model.table[3, 0] -= 2.0  # omega 18
    assert anchor_penalty(ctx, anchor, omega).item() == pytest.approx(8 * 0.25 + 18 * 4.0)
    assert anchor_penalty(ctx, anchor, None).item() == pytest.approx(0.25 + 4.0)
    with torch.no_grad():
        model.table.add_(torch.randn(VOCAB, VOCAB, generator=torch.Generator().manual_seed(1)))
    formula = (omega["table"] * (model.table.detach() - anchor["table"]) ** 2).sum()
    assert anchor_penalty(ctx, anchor, omega).item() == pytest.approx(formula.item(), rel=1e-6)


def test_normalised_importance_has_mean_one():
    importance = {"a": torch.rand(3, 4) * 1e-7, "b": torch.rand(5) * 1e-9}
    normalised = normalise_mean_one(importance)
    flat = torch.cat([t.flatten() for t in normalised.values()])
    assert flat.mean().item() == pytest.approx(1.0, rel=1e-6)
    assert torch.allclose(normalised["a"] / normalised["a"][0, 0], importance["a"] / importance["a"][0, 0])


def test_l2_penalises_only_after_the_first_task():
    strategy = STRATEGIES.get("l2")(STRATEGIES.get("l2").options_class(strength=3.0))
    model = Bigram()
    ctx = context(model, SAMPLES_A)
    loss = torch.tensor(1.0)
    assert strategy.loss(ctx, None, None, loss) is loss
    strategy.after_task(ctx)
    with torch.no_grad():
        model.table[0, 0] += 0.1
    assert strategy.loss(ctx, None, None, loss).item() == pytest.approx(1.0 + 3.0 * 0.01)


def test_per_sample_fisher_is_the_mean_of_squared_per_sample_gradients():
    model = Bigram()
    ctx = context(model, SAMPLES_A)
    fisher = fisher_diagonal(ctx, EWCOptions(fisher="per_sample"))["table"]
    expected = torch.stack([hand_gradient(model.table, s).square() for s in SAMPLES_A]).mean(0)
    assert torch.allclose(fisher, expected, atol=1e-7)

    empirical = fisher_diagonal(ctx, EWCOptions(fisher="empirical", batch_size=len(SAMPLES_A)))["table"]
    batch = ctx.collator.train_batch(SAMPLES_A)
    mean_gradient = torch.autograd.grad(answer_loss(model(**batch.inputs).logits, batch.labels), model.table)[0]
    assert torch.allclose(empirical, mean_gradient.square(), atol=1e-7)
    assert not torch.allclose(empirical, fisher, atol=1e-4)


def test_online_ewc_averages_normalised_fishers_over_tasks():
    model = Bigram()
    ewc = EWC(EWCOptions(strength=2.0))
    ctx_a, ctx_b = context(model, SAMPLES_A, 0), context(model, SAMPLES_B, 1)
    fisher_a = normalise_mean_one(fisher_diagonal(ctx_a, ewc.options))["table"]
    fisher_b = normalise_mean_one(fisher_diagonal(ctx_b, ewc.options))["table"]
    ewc.after_task(ctx_a)
    assert torch.equal(ewc.anchor.importance["table"], fisher_a)
    ewc.after_task(ctx_b)
    assert torch.allclose(ewc.anchor.importance["table"], (fisher_a + fisher_b) / 2)
    assert ewc.anchor.importance["table"].mean().item() == pytest.approx(1.0, rel=1e-5)

    with torch.no_grad():
        model.table[2, 3] += 0.2
    penalty = ewc.loss(ctx_b, None, None, torch.tensor(0.0)).item()
    assert penalty == pytest.approx(0.5 * 2.0 * ewc.anchor.importance["table"][2, 3].item() * 0.04, rel=1e-5)


def test_mas_importance_is_non_negative_nonzero_and_the_mean_absolute_sensitivity():
    model = Bigram()
    ctx = context(model, SAMPLES_A)
    omega = output_sensitivity(ctx, MASOptions())["table"]
    assert (omega >= 0).all() and omega.sum() > 0
    # One sample, answer positions t: d mean_t ||table[x_t]||^2 / d table[x] = 2 table[x] * count(x) / n.
    # SAMPLES_A[0]: the positions that predict answer tokens read ids 2 and 3.
    single = output_sensitivity(context(model, [SAMPLES_A[0]]), MASOptions())["table"]
    expected = torch.zeros_like(single)
    expected[2], expected[3] = (2 * model.table[2] / 2).abs().detach(), (2 * model.table[3] / 2).abs().detach()
    assert torch.allclose(single, expected)


class Scalar(torch.nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor([value]))


def run_quadratic_task(si: SI, ctx: Context, target: float, steps: int, lr: float) -> None:
    """The loop's hook order on the task loss 1/2 (theta - target)^2 with plain gradient descent."""
    theta = ctx.model.theta
    si.before_task(ctx)
    for _ in range(steps):
        loss = si.loss(ctx, None, None, 0.5 * (theta - target).square().sum())
        loss.backward()
        si.after_backward(ctx, None)
        with torch.no_grad():
            theta -= lr * theta.grad
        theta.grad = None
    si.after_task(ctx)


def test_si_path_integral_matches_the_hand_computed_sum_on_a_quadratic():
    lr, steps, c, xi = 0.1, 5, 0.5, 1e-3
    model = Scalar(0.0)
    si = SI(SIOptions(strength=c, damping=xi, normalise=False, clamp_negative=False))
    ctx = context(model, SAMPLES_A)

    theta, w = 0.0, 0.0
    for _ in range(steps):  # task 1: target 1, no penalty; w = sum lr g^2
        g = theta - 1.0
        w += -g * (-lr * g)
        theta -= lr * g
    omega_1 = w / (theta**2 + xi)
    run_quadratic_task(si, ctx, target=1.0, steps=steps, lr=lr)
    assert si.omega_sum["theta"].item() == pytest.approx(omega_1, rel=1e-5)
    assert model.theta.item() == pytest.approx(theta, rel=1e-6)

    start, star, w = theta, theta, 0.0
    for _ in range(steps):  # task 2: target -1, penalty c omega (theta - theta*)^2 moves theta too
        task_grad = theta + 1.0
        step = -lr * (task_grad + 2 * c * omega_1 * (theta - star))
        w += -task_grad * step  # the task-loss gradient only
        theta += step
    omega_2 = omega_1 + w / ((theta - start) ** 2 + xi)
    run_quadratic_task(si, ctx, target=-1.0, steps=steps, lr=lr)
    assert model.theta.item() == pytest.approx(theta, rel=1e-5)
    assert si.omega_sum["theta"].item() == pytest.approx(omega_2, rel=1e-4)


def trained(name: str, ctx_a: Context, ctx_b: Context):
    """Two tasks of one plain gradient step each, through every hook."""
    strategy = STRATEGIES.get(name)()
    for ctx in (ctx_a, ctx_b):
        strategy.before_task(ctx)
        batch = ctx.collator.train_batch(ctx.task.train)
        loss = strategy.loss(ctx, batch, None, answer_loss(ctx.model(**batch.inputs).logits, batch.labels))
        loss.backward()
        strategy.after_backward(ctx, None)
        with torch.no_grad():
            ctx.model.table -= 0.1 * ctx.model.table.grad
        ctx.model.table.grad = None
        strategy.after_task(ctx)
    return strategy


@pytest.mark.parametrize("name", ["l2", "ewc", "mas", "si"])
def test_state_round_trip_gives_identical_penalties(tmp_path, name):
    model = Bigram()
    ctx_a, ctx_b = context(model, SAMPLES_A, 0), context(model, SAMPLES_B, 1)
    strategy = trained(name, ctx_a, ctx_b)
    save_state_tree(strategy.state_dict(), tmp_path / "state")
    restored = STRATEGIES.get(name)()
    restored.load_state_dict(load_state_tree(tmp_path / "state"))
    with torch.no_grad():
        model.table.add_(torch.linspace(-0.3, 0.3, VOCAB * VOCAB).reshape(VOCAB, VOCAB))
    zero = torch.tensor(0.0)
    original, copy = strategy.loss(ctx_b, None, None, zero), restored.loss(ctx_b, None, None, zero)
    assert original.item() > 0 and torch.equal(original, copy)
