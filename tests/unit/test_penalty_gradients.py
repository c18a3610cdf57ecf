"""The foreach/analytic per-step paths give what the per-tensor autograd formulas gave.

The quadratic penalty of l2/ewc/mas/si is one autograd node with a hand-written gradient,
SI's path integral and DGG's guidance run as ``torch._foreach_*`` calls over tensor lists, and
A-GEM projects the gradient tensors in place. Each is checked here against the plain
per-tensor formulation it replaced (written out in this file), on single steps and through
the training loop (AdamW, gradient clipping) over two tasks.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from mcit.data.collate import Batch
from mcit.losses import answer_loss
from mcit.state_tree import load_state_tree, save_state_tree
from mcit.strategies import STRATEGIES, Context, Strategy, TaskView
from mcit.strategies._anchor import Anchor
from mcit.strategies._importance import snapshot
from mcit.strategies.dgg import DGGOptions, DynamicGradientGuidance, scales
from mcit.strategies.si import SI, SIOptions
from mcit.training.loop import train
from mcit.training.settings import TrainConfig
from token_collator import TokenCollator

VOCAB = 7


class SmallLM(torch.nn.Module):
    """Embedding -> tanh -> linear, plus a trainable tensor the forward pass never uses."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.embed = torch.nn.Parameter(torch.randn(VOCAB, 5, generator=generator))
        self.head = torch.nn.Linear(5, VOCAB)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(VOCAB, 5, generator=generator))
            self.head.bias.copy_(torch.randn(VOCAB, generator=generator))
        self.unused = torch.nn.Parameter(torch.randn(3, generator=generator))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> SimpleNamespace:
        return SimpleNamespace(logits=self.head(torch.tanh(self.embed[input_ids])))


def task_samples(seed: int, count: int = 24) -> list:
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        prompt = torch.randint(0, VOCAB, (int(torch.randint(1, 4, (1,), generator=generator)),), generator=generator)
        answer = torch.randint(0, VOCAB, (int(torch.randint(1, 3, (1,), generator=generator)),), generator=generator)
        out.append((tuple(prompt.tolist()), tuple(answer.tolist())))
    return out


TASKS = [("a", task_samples(1)), ("b", task_samples(2)), ("c", task_samples(3))]


def context(model: torch.nn.Module, index: int) -> Context:
    name, samples = TASKS[index]
    return Context(model, TaskView(index, name, samples), seed=index, device=torch.device("cpu"), collator=TokenCollator())


def autograd_penalty(ctx: Context, theta_star, importance) -> torch.Tensor:
    """The per-tensor autograd formula the penalty used to be built from."""
    total = torch.zeros((), dtype=torch.float32)
    for name, param in ctx.trainable():
        squared = (param.float() - theta_star[name]).square()
        total = total + (squared.sum() if importance is None else (importance[name] * squared).sum())
    return total


def anchor_penalty(ctx: Context, theta_star, importance) -> torch.Tensor:
    """The production penalty: an :class:`Anchor` holding theta* and Omega, at scale 1."""
    anchor = Anchor()
    anchor.theta_star, anchor.importance = theta_star, importance
    return anchor.penalty(ctx)


def grads_of(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


def moved(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A copy of ``model`` with every parameter shifted by a seeded random amount."""
    out = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=generator))
    return out


@pytest.mark.parametrize(("with_importance", "signed"), [(False, False), (True, False), (True, True)])
def test_penalty_value_and_gradient_match_the_autograd_formula_before_and_after_clipping(with_importance, signed):
    model = SmallLM()
    theta_star = snapshot(context(model, 0))
    generator = torch.Generator().manual_seed(5)
    omega = None
    if with_importance:
        # Signed Omega: SI without clamping can make it negative; the penalty must still match.
        omega = {n: torch.rand(t.shape, generator=generator) - (0.5 if signed else 0.0) for n, t in theta_star.items()}
    batch = TokenCollator().train_batch(TASKS[1][1])
    results = []
    for use_autograd in (True, False):
        model_copy = moved(model, seed=9)
        ctx = context(model_copy, 1)
        penalty = autograd_penalty(ctx, theta_star, omega) if use_autograd else anchor_penalty(ctx, theta_star, omega)
        loss = answer_loss(model_copy(**batch.inputs).logits, batch.labels) + 0.7 * penalty
        loss.backward()
        unclipped = grads_of(model_copy)
        torch.nn.utils.clip_grad_norm_(list(model_copy.parameters()), 0.5)
        results.append((penalty.detach(), unclipped, grads_of(model_copy)))
    (value_a, raw_a, clipped_a), (value_b, raw_b, clipped_b) = results
    assert torch.allclose(value_a, value_b, rtol=1e-6)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(raw_a, raw_b))
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(clipped_a, clipped_b))
    assert not torch.equal(raw_a[2], torch.zeros(3)), "the unused tensor gets the penalty gradient"


def test_penalty_gradient_in_bf16_parameters_matches_the_autograd_formula():
    model = SmallLM().to(torch.bfloat16)
    theta_star = snapshot(context(model, 0))
    omega = {n: torch.rand(t.shape) for n, t in theta_star.items()}
    grads = []
    for use_autograd in (True, False):
        model_copy = moved(model, seed=3)
        ctx = context(model_copy, 1)
        penalty = autograd_penalty(ctx, theta_star, omega) if use_autograd else anchor_penalty(ctx, theta_star, omega)
        (2.0 * penalty).backward()
        grads.append(grads_of(model_copy))
    assert all(a.dtype == torch.bfloat16 for a in grads[1])
    assert all(torch.allclose(a.float(), b.float(), rtol=1e-2) for a, b in zip(*grads))


def test_anchor_reports_the_penalty_gradient_it_added_and_follows_new_anchors():
    model = moved(SmallLM(), seed=1)
    ctx = context(model, 1)
    anchor = Anchor()
    anchor.theta_star = snapshot(context(SmallLM(), 0))
    anchor.importance = {n: torch.full_like(t, 2.0) for n, t in anchor.theta_star.items()}
    anchor.penalised(ctx, torch.tensor(0.0), 0.25, record_gradients=True).backward()
    expected = [2 * 0.25 * 2.0 * (p.detach() - anchor.theta_star[n]) for n, p in ctx.trainable()]
    assert all(torch.allclose(a, b) for a, b in zip(anchor.penalty_grads.views, expected))
    assert all(torch.allclose(p.grad, b) for (_, p), b in zip(ctx.trainable(), expected))
    anchor.penalty(ctx)
    assert anchor.penalty_grads is None, "a new penalty clears the last backward's gradients"
    anchor.penalised(ctx, torch.tensor(0.0), 0.25).backward()
    assert anchor.penalty_grads is None, "recorded only when asked"

    anchor.theta_star = snapshot(ctx)  # assigning a new theta* replaces the cached vectors
    assert anchor.penalty(ctx).item() == 0.0


def test_two_penalties_before_one_backward_add_up():
    """The scratch vector is shared by calls; each call's gradient must still be its own."""
    model = moved(SmallLM(), seed=1)
    ctx = context(model, 1)
    anchor = Anchor()
    anchor.theta_star = snapshot(context(SmallLM(), 0))
    anchor.importance = {n: torch.rand(t.shape) for n, t in anchor.theta_star.items()}
    (anchor.penalty(ctx) + anchor.penalty(ctx, 2.0)).backward()
    together = grads_of(model)
    model.zero_grad(set_to_none=True)
    (3.0 * autograd_penalty(ctx, anchor.theta_star, anchor.importance)).backward()
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(together, grads_of(model)))


def test_gradient_vector_is_reused_only_once_the_last_graph_is_gone():
    model = moved(SmallLM(), seed=1)
    ctx = context(model, 1)
    anchor = Anchor()
    anchor.theta_star = snapshot(context(SmallLM(), 0))
    expected = [2 * (p.detach() - anchor.theta_star[n]) for n, p in ctx.trainable()]
    kept = []
    loss = None
    for _ in range(3):  # the loop's pattern: the last step's loss is dropped before the penalty
        loss = None
        loss = anchor.penalty(ctx)
        model.zero_grad(set_to_none=True)
        loss.backward()
        kept.append(anchor._flat[2].gradient)
        assert all(torch.allclose(p.grad, e) for p, e in zip(model.parameters(), expected))
    assert kept[0] is kept[1] is kept[2]

    first = anchor.penalty(ctx)
    first.backward(retain_graph=True)  # first's graph stays alive: a new penalty must not reuse its vector
    second = anchor.penalty(ctx, 5.0)
    model.zero_grad(set_to_none=True)
    first.backward()
    assert all(torch.allclose(p.grad, e) for p, e in zip(model.parameters(), expected))
    model.zero_grad(set_to_none=True)
    second.backward()
    assert all(torch.allclose(p.grad, 5 * e) for p, e in zip(model.parameters(), expected))


class AutogradPenalty(Strategy):
    """A strategy's loss hook as it was: its own anchor, the penalty built per tensor."""

    def __init__(self, inner: Strategy, scale: float) -> None:
        super().__init__()
        self.inner, self.scale = inner, scale

    def before_task(self, ctx: Context) -> None:
        self.inner.before_task(ctx)

    def loss(self, ctx, batch, outputs, loss):
        anchor = self.inner.anchor
        if anchor.theta_star is None:
            return loss
        return loss + self.scale * autograd_penalty(ctx, anchor.theta_star, anchor.importance)

    def after_task(self, ctx: Context) -> None:
        self.inner.after_task(ctx)


class PerTensorSI(Strategy):
    """SI as it was before the foreach rewrite: dicts by name, the penalty in autograd."""

    def __init__(self, options: SIOptions) -> None:
        super().__init__(options)
        self.theta_star = self.importance = self.omega_sum = None
        self.previous_theta = self.previous_grad = None

    def before_task(self, ctx):
        self.theta_start = snapshot(ctx)
        self.path_integral = {n: torch.zeros_like(t) for n, t in self.theta_start.items()}
        self.previous_theta = self.previous_grad = None

    def loss(self, ctx, batch, outputs, loss):
        if self.theta_star is None:
            return loss
        return loss + self.options.strength * autograd_penalty(ctx, self.theta_star, self.importance)

    def accumulate(self, theta):
        if self.previous_theta is not None:
            for n, w in self.path_integral.items():
                w.sub_(self.previous_grad[n] * (theta[n] - self.previous_theta[n]))

    def after_backward(self, ctx, batch):
        theta = snapshot(ctx)
        self.accumulate(theta)
        grads = {
            n: torch.zeros_like(theta[n]) if p.grad is None else p.grad.detach().float().clone()
            for n, p in ctx.trainable()
        }
        if self.theta_star is not None:
            for n, g in grads.items():
                g.sub_(2 * self.options.strength * self.importance[n] * (theta[n] - self.theta_star[n]))
        self.previous_theta, self.previous_grad = theta, grads

    def after_task(self, ctx):
        theta_end = snapshot(ctx)
        self.accumulate(theta_end)
        contribution = {
            n: (w / ((theta_end[n] - self.theta_start[n]).square() + self.options.damping)).clamp(min=0)
            for n, w in self.path_integral.items()
        }
        self.omega_sum = contribution if self.omega_sum is None else {n: self.omega_sum[n] + t for n, t in contribution.items()}
        mean = sum(t.double().sum() for t in self.omega_sum.values()) / sum(t.numel() for t in self.omega_sum.values())
        self.importance = {n: t / float(mean) for n, t in self.omega_sum.items()}
        self.theta_star = theta_end


SETTINGS = TrainConfig(epochs=2, batch_size=8, lr=0.05, max_grad_norm=0.3, warmup_ratio=0.0)


def train_tasks(strategy: Strategy, model: torch.nn.Module, tasks: int = 3) -> None:
    for index in range(tasks):
        ctx = context(model, index)
        strategy.before_task(ctx)
        train(ctx, list(strategy.train_data(ctx, ctx.task.train)), strategy, SETTINGS)
        strategy.after_task(ctx)


def assert_close_models(first: torch.nn.Module, second: torch.nn.Module) -> None:
    for (name, a), b in zip(first.named_parameters(), second.parameters()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), name


@pytest.mark.parametrize(("name", "scale"), [("l2", 1.0), ("ewc", 0.5), ("mas", 1.0)])
def test_three_tasks_through_the_loop_match_the_autograd_penalty(name, scale):
    model = SmallLM()
    reference_model = copy.deepcopy(model)
    strategy = STRATEGIES.get(name)()
    reference = AutogradPenalty(STRATEGIES.get(name)(), scale)
    train_tasks(strategy, model)
    train_tasks(reference, reference_model)
    assert_close_models(model, reference_model)
    assert strategy.anchor.importance is None or all(
        torch.allclose(strategy.anchor.importance[n], reference.inner.anchor.importance[n], rtol=1e-4, atol=1e-5)
        for n in strategy.anchor.importance
    )


def test_si_through_the_loop_matches_the_per_tensor_implementation():
    options = SIOptions(strength=2.0)
    model = SmallLM()
    reference_model = copy.deepcopy(model)
    si, reference = SI(options), PerTensorSI(options)
    train_tasks(si, model)
    train_tasks(reference, reference_model)
    assert_close_models(model, reference_model)
    for n, omega in reference.omega_sum.items():
        assert torch.allclose(si.omega_sum[n], omega, rtol=1e-3, atol=1e-6), n


def test_si_resumes_mid_task_from_a_by_name_state(tmp_path):
    """The running state is saved by name (the old format) and restored into aligned lists."""
    model = SmallLM()
    si = SI()
    train_tasks(si, model, tasks=1)
    ctx = context(model, 1)
    si.before_task(ctx)
    batches = [ctx.collator.train_batch(TASKS[1][1][i : i + 6]) for i in range(0, 24, 6)]

    def step(strategy: SI, target: torch.nn.Module, batch: Batch) -> None:
        step_ctx = context(target, 1)
        loss = strategy.loss(step_ctx, batch, None, answer_loss(target(**batch.inputs).logits, batch.labels))
        loss.backward()
        strategy.after_backward(step_ctx, batch)
        with torch.no_grad():
            for p in target.parameters():
                p -= 0.1 * p.grad
                p.grad = None

    for batch in batches[:2]:
        step(si, model, batch)
    state = si.state_dict()
    assert set(state["running"]) == {"theta_start", "path_integral", "previous_theta", "previous_grad"}
    assert set(state["running"]["previous_grad"]) == {n for n, _ in model.named_parameters()}
    save_state_tree(state, tmp_path / "s")
    restored, restored_model = SI(), copy.deepcopy(model)
    restored.load_state_dict(load_state_tree(tmp_path / "s"))
    for batch in batches[2:]:
        step(si, model, batch)
        step(restored, restored_model, batch)
    si.after_task(context(model, 1))
    restored.after_task(context(restored_model, 1))
    assert all(torch.equal(si.omega_sum[n], restored.omega_sum[n]) for n in si.omega_sum)


def guidance(displacement, grads):
    """DGG's ``g_hat = d * min(1, ||g|| / ||d||)`` per tensor from the hook's scales."""
    return [None if scale is None else d * scale for d, scale in zip(displacement, scales(displacement, grads))]


def per_tensor_guidance(displacement, grads):
    """DGG's global-norm guidance as it was: a Python sum of per-tensor squared sums."""
    d_norm = torch.sqrt(sum(d.float().pow(2).sum() for d in displacement))
    g_norm = torch.sqrt(sum(g.float().pow(2).sum() for g in grads))
    return [d * torch.clamp(g_norm / d_norm, max=1.0) for d in displacement]


@pytest.mark.parametrize("gradient_scale", [1e-3, 1e3])
def test_global_guidance_matches_the_per_tensor_sums(gradient_scale):
    generator = torch.Generator().manual_seed(0)
    shapes = [(4, 3), (7,), (2, 2, 2)]
    displacement = [torch.randn(s, generator=generator) for s in shapes]
    grads = [gradient_scale * torch.randn(s, generator=generator) for s in shapes]
    for a, b in zip(guidance(displacement, grads), per_tensor_guidance(displacement, grads)):
        assert torch.allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dgg_hook_adds_the_guidance_to_every_gradient(dtype):
    model = SmallLM().to(dtype)
    ctx = context(model, 1)
    dgg = DynamicGradientGuidance(DGGOptions(alpha=1.0))
    dgg.before_task(ctx)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2)
    batch = ctx.collator.train_batch(TASKS[1][1])
    answer_loss(model(**batch.inputs).logits, batch.labels).backward()
    before = grads_of(model)
    displacement = [p.detach().float() - dgg.anchor[n] for n, p in model.named_parameters()]
    guided = per_tensor_guidance(displacement, before)
    # The guidance is computed in fp32 and added to the gradient in the gradient's dtype.
    expected = [g + extra.to(dtype) for g, extra in zip(before, guided)]
    assert model.unused.grad is None
    dgg.after_backward(ctx, batch)
    assert all(p.grad.dtype == dtype for p in model.parameters())
    assert all(torch.allclose(p.grad, e, rtol=1e-6, atol=1e-8) for p, e in zip(model.parameters(), expected))
