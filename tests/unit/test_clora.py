"""C-LoRA: the penalty equals ||P (.) DeltaW||_F^2 computed from peft's own delta weights."""

from __future__ import annotations

import copy

import pytest
import torch

from mcit.config import LoraConfig
from mcit.models.hf import configure_trainable, load_vlm
from mcit.state_tree import load_state_tree, save_state_tree
from mcit.strategies import STRATEGIES, Context, TaskView
from mcit.strategies._lora import lora_layers
from mcit.strategies.clora import CLoRA, CLoRAOptions

ZERO = torch.tensor(0.0)


@pytest.fixture(scope="module")
def tiny_model():
    return load_vlm("tiny")[0]


def lora_context(tiny_model, trainable=()) -> Context:
    model = configure_trainable(copy.deepcopy(tiny_model), list(trainable), LoraConfig(r=2, alpha=6.0))
    return Context(model, TaskView(0, "task", []), seed=0, device=torch.device("cpu"))


def train_adapters(model, seed: int) -> None:
    """Stand-in for a task's training: move every LoRA factor by a seeded step."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.add_(0.1 * torch.randn(param.shape, generator=generator))


def deltas(model) -> dict[str, torch.Tensor]:
    """peft's own update of every adapted weight: scaling * B @ A (differentiable)."""
    return {name: layer.get_delta_weight("default") for name, layer in lora_layers(model).items()}


@pytest.mark.parametrize("normalise", [False, True])
def test_penalty_is_zero_in_the_first_task_then_the_frobenius_norm_of_past_times_current(tiny_model, normalise):
    ctx = lora_context(tiny_model)
    clora = CLoRA(CLoRAOptions(strength=2.0, normalise=normalise))
    clora.before_task(ctx)
    train_adapters(ctx.model, 0)
    assert clora.loss(ctx, None, None, ZERO) is ZERO
    clora.after_task(ctx)
    past = {name: d.detach().clone() for name, d in deltas(ctx.model).items()}  # B started at 0: D_0 = 0
    assert len(past) == 14 and all(p.abs().sum() > 0 for p in past.values())

    clora.before_task(ctx)
    assert clora.loss(ctx, None, None, ZERO).item() == 0.0  # no update in this task yet
    train_adapters(ctx.model, 1)
    current = {name: d - past[name] for name, d in deltas(ctx.model).items()}
    expected = sum((past[n] * current[n]).square().sum() for n in past)
    if normalise:
        expected = expected / (sum(p.square().sum() for p in past.values()) / sum(p.numel() for p in past.values()))
    penalty = clora.loss(ctx, None, None, ZERO)
    assert penalty.item() == pytest.approx(2.0 * expected.item(), rel=1e-5)

    lora_params = [p for n, p in ctx.model.named_parameters() if "lora_" in n]
    got = torch.autograd.grad(penalty, lora_params)
    want = torch.autograd.grad(2.0 * expected, lora_params)
    assert all((g - w).abs().max() <= 1e-5 * w.abs().max() for g, w in zip(got, want))


def test_gradients_reach_only_the_lora_factors(tiny_model):
    ctx = lora_context(tiny_model)
    clora = STRATEGIES.get("clora")()
    for seed in (0, 1):
        clora.before_task(ctx)
        train_adapters(ctx.model, seed)
        if seed == 0:
            clora.after_task(ctx)
    clora.loss(ctx, None, None, ZERO).backward()
    touched = {n for n, p in ctx.model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert touched and all("lora_" in n for n in touched)
    assert any("lora_A" in n for n in touched) and any("lora_B" in n for n in touched)


def test_past_is_the_adapters_update_at_the_end_of_the_previous_task(tiny_model):
    ctx = lora_context(tiny_model)
    clora = CLoRA()
    for seed in range(3):
        clora.before_task(ctx)
        train_adapters(ctx.model, seed)
        clora.after_task(ctx)
        end = deltas(ctx.model)
        for name, layer in end.items():
            assert torch.allclose(clora.factors[f"{name}/default"].dense(), layer, atol=1e-6)
            # one adapter kept across tasks: the updates telescope, P stays of the adapter's rank
            assert clora.factors[f"{name}/default"].rank == 2
    assert clora.tasks == 3
    assert not clora.past, "no dense matrix is kept for an adapted weight"


def test_past_of_merged_adapters_grows_by_their_rank_and_stays_factored(tiny_model):
    """Restart the adapter after each task (as lora and msgm do after merging): P = sum of the updates, rank 2 per task."""
    ctx = lora_context(tiny_model)
    clora = CLoRA()
    total = None
    for seed in range(3):
        clora.before_task(ctx)
        train_adapters(ctx.model, seed)
        clora.after_task(ctx)
        update = {name: d.detach().clone() for name, d in deltas(ctx.model).items()}
        total = update if total is None else {n: total[n] + update[n] for n in total}
        for layer in lora_layers(ctx.model).values():  # restart: B = 0 (the update is not merged here)
            torch.nn.init.zeros_(layer.lora_B["default"].weight)
    for name, expected in total.items():
        factors = clora.factors[f"{name}/default"]
        assert factors.rank == 3 * 2
        torch.testing.assert_close(factors.dense(), expected, rtol=1e-5, atol=1e-6)
    stored = sum(f.u.numel() + f.v.numel() for f in clora.factors.values())
    dense = sum(f.numel for f in clora.factors.values())
    assert stored < dense


def test_full_weights_use_the_displacement_from_the_first_task_start():
    model = torch.nn.Module()
    model.theta = torch.nn.Parameter(torch.tensor([0.0, 0.0]))
    ctx = Context(model, TaskView(0, "task", []), seed=0, device=torch.device("cpu"))
    clora = CLoRA(CLoRAOptions(strength=2.0))
    clora.before_task(ctx)
    with torch.no_grad():
        model.theta.copy_(torch.tensor([1.0, 3.0]))
    assert clora.loss(ctx, None, None, ZERO) is ZERO
    clora.after_task(ctx)  # P = theta*_1 - theta_0 = (1, 3), mean P^2 = 5
    clora.before_task(ctx)
    with torch.no_grad():
        model.theta.copy_(torch.tensor([1.5, 2.0]))  # current = (0.5, -1)
    assert clora.loss(ctx, None, None, ZERO).item() == pytest.approx(2.0 * (1 * 0.25 + 9 * 1) / 5)
    clora.after_task(ctx)
    assert clora.past["theta"].tolist() == [1.5, 2.0]  # P = theta*_2 - theta_0, mean P^2 = 3.125
    clora.before_task(ctx)
    with torch.no_grad():
        model.theta.copy_(torch.tensor([2.5, 2.0]))  # current = (1, 0)
    assert clora.loss(ctx, None, None, ZERO).item() == pytest.approx(2.0 * 2.25 / 3.125)


def test_full_weight_parts_next_to_lora_are_their_own_units(tiny_model):
    ctx = lora_context(tiny_model, trainable=["projector"])
    clora = CLoRA()
    clora.before_task(ctx)
    projector = {n for n, _ in ctx.trainable() if "lora_" not in n}
    assert projector and all("multi_modal_projector" in n for n in projector)
    assert set(clora.start) == projector | {f"{n}/default" for n in lora_layers(ctx.model)}


def test_state_round_trip_gives_an_identical_penalty(tmp_path, tiny_model):
    ctx = lora_context(tiny_model)
    clora = CLoRA()
    for seed in (0, 1):
        clora.before_task(ctx)
        train_adapters(ctx.model, seed)
        clora.after_task(ctx)
    save_state_tree(clora.state_dict(), tmp_path / "task-end")
    restored = CLoRA()
    restored.load_state_dict(load_state_tree(tmp_path / "task-end"))
    for strategy in (clora, restored):
        strategy.before_task(ctx)
    train_adapters(ctx.model, 2)
    original = clora.loss(ctx, None, None, ZERO)
    assert original.item() > 0 and torch.equal(original, restored.loss(ctx, None, None, ZERO))

    save_state_tree(clora.state_dict(), tmp_path / "mid-task")  # with the task-start factors
    mid = CLoRA()
    mid.load_state_dict(load_state_tree(tmp_path / "mid-task"))
    assert torch.equal(mid.loss(ctx, None, None, ZERO), original)
