"""The adapter methods' arithmetic on a sharded peft model (FSDP2, a real 2-process gloo group)
against the same arithmetic on the whole model in one process: merging and restarting an
adapter (lora, msgm), C-LoRA's penalty and its gradient, O-LoRA's loss terms and their
gradient on a task adapter created before sharding, and the merged model a sharded run writes."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from conftest import largest_difference, on_two_gloo_processes
from mcit.distributed import SINGLE, world_from_environment
from mcit.models.saving import merged_state
from mcit.sharding import Layout, full, local, local_part, shard_model, whole_state
from mcit.strategies import Context, TaskView
from mcit.strategies._lora import factors, fold, restart
from mcit.strategies.clora import CLoRA
from mcit.strategies.olora import OLoRA, OLoRAOptions


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 5)  # LoRA rank 4 on it: A 4 x 6 (shards of 2 and 2), B 5 x 4 (3 and 2)
        self.b = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def lora_net() -> nn.Module:
    """Net with a rank-4 LoRA on both layers, B drawn at random (so B A is not 0), and ``a``'s bias trained beside it."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(Net(), LoraConfig(r=4, lora_alpha=8, target_modules=["a", "b"]))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape))
    model.base_model.model.a.base_layer.bias.requires_grad_(True)
    return model


def _nudge(ctx: Context, sharded: Context | None, generator: torch.Generator) -> None:
    """Move every trainable parameter by the same random step in both models (``sharded``: its shards of it)."""
    with torch.no_grad():
        trained = dict(sharded.trainable()) if sharded is not None else {}
        for name, param in ctx.trainable():
            step = 0.05 * torch.randn(param.shape, generator=generator)
            param.add_(step)
            if name in trained:
                local(trained[name]).add_(local_part(step, trained[name]))


def _worker(rank: int) -> dict:
    world = dataclasses.replace(world_from_environment(), sharded=True)
    reference = lora_net()
    model = copy.deepcopy(reference)
    shard_model(model, [model.base_model.model.a])
    one = Context(reference, TaskView(1, "t", []), 0, torch.device("cpu"))
    ctx = Context(model, TaskView(1, "t", []), 0, torch.device("cpu"), world=world)
    out: dict[str, float | bool] = {}
    whole = lambda: whole_state(model)  # noqa: E731

    # lora / msgm: record the adapter, fold it into the base weights, restart it.
    recorded, expected = factors(model, "default"), factors(reference, "default")
    out["factors"] = max(largest_difference(recorded[n][k], expected[n][k]) for n in expected for k in ("A", "B"))
    fold(model, "default", recorded)
    fold(reference, "default", expected)
    restart(model, "default", 3)
    restart(reference, "default", 3)
    state = whole()
    out["fold_restart"] = max(largest_difference(state[n], t) for n, t in reference.state_dict().items())

    # The merged model a sharded run writes, from the gathered state, against peft's merge of the whole model.
    merged = merged_state(model, whole())
    peft_merged = copy.deepcopy(reference).merge_and_unload().state_dict()
    out["merged_keys"] = merged.keys() == peft_merged.keys()
    out["merged"] = max(largest_difference(merged[n], t) for n, t in peft_merged.items())

    # C-LoRA: a finished task (P from its update), then the penalty of the next task's update and its gradient.
    generator = torch.Generator().manual_seed(1)
    reference_clora, clora = CLoRA(), CLoRA()
    reference_clora.before_task(one)
    clora.before_task(ctx)
    _nudge(one, ctx, generator)
    reference_clora.after_task(one)
    clora.after_task(ctx)
    reference_clora.before_task(one)
    clora.before_task(ctx)
    _nudge(one, ctx, generator)
    expected_value = reference_clora.penalty(one)
    expected_value.backward()
    ctx.shard_weight = 0.25  # this process's micro-batch weights (the loop multiplies the loss by them)
    value = clora.penalty(ctx) * 0.25
    value.backward()
    total = value.detach().reshape(1).clone()
    world.sum_tensors_([total])
    out["clora_penalty"] = abs(float(total) - float(expected_value)) / float(expected_value)
    sharded = dict(ctx.trainable())
    out["clora_grad"] = max(largest_difference(full(sharded[n].grad), p.grad) for n, p in one.trainable())
    out["clora_dense_trained"] = "base_model.model.a.base_layer.bias" in clora.past
    gathered = Layout(model).gather(clora.state_dict())
    theirs = reference_clora.state_dict()
    out["clora_state"] = max(
        largest_difference(gathered[part][n], t) for part in ("past", "factors_u", "factors_v") for n, t in theirs[part].items()
    )
    out["clora_start"] = max(largest_difference(gathered["start"][n][i], t) for n, ts in theirs["start"].items() for i, t in enumerate(ts))
    out.update(_olora(world, generator))
    return out


def _olora(world, generator: torch.Generator) -> dict[str, float | bool]:
    """O-LoRA: task 2's adapter added before sharding (frozen), switched on at its start; both loss terms and their gradient."""
    options = OLoRAOptions(lambda1=0.5, lambda2=0.1)
    reference, model = lora_net(), lora_net()
    reference_olora, olora = OLoRA(options), OLoRA(options)
    olora.before_sharding(model, tasks=2)
    out: dict[str, float | bool] = {"olora_added_frozen": not any(p.requires_grad for n, p in model.named_parameters() if ".task1." in n)}
    shard_model(model, [model.base_model.model.a])
    one, ctx = (Context(m, TaskView(0, "t", []), 0, torch.device("cpu"), world=w) for m, w in ((reference, SINGLE), (model, world)))
    for task in (0, 1):
        one.task = ctx.task = TaskView(task, f"t{task}", [])
        reference_olora.before_task(one)
        olora.before_task(ctx)
        _nudge(one, ctx, generator)
        if task == 0:
            reference_olora.after_task(one)
            olora.after_task(ctx)
    out["olora_trains_task1"] = {n for n, _ in ctx.trainable()} == {n for n, _ in one.trainable()} and any(".task1." in n for n, _ in ctx.trainable())
    zero = torch.zeros(())
    expected = reference_olora.loss(one, None, None, zero)
    expected.backward()
    ctx.shard_weight = 0.25
    value = olora.loss(ctx, None, None, zero) * 0.25
    value.backward()
    total = value.detach().reshape(1).clone()
    world.sum_tensors_([total])
    out["olora_loss"] = abs(float(total) - float(expected)) / float(expected)
    sharded = dict(ctx.trainable())
    out["olora_grad"] = max(largest_difference(full(sharded[n].grad), p.grad) for n, p in one.trainable() if p.grad is not None)
    return out


@pytest.mark.slow
def test_adapter_methods_on_sharded_parameters_match_one_process():
    results = on_two_gloo_processes(_worker)
    for rank in (0, 1):
        out = dict(results[rank])
        assert out["factors"] == 0 and out["fold_restart"] == 0, out  # the same arithmetic on the same values: the same bits
        assert out["merged_keys"] and out["merged"] < 1e-6, out
        assert out["clora_dense_trained"], "the test must cover C-LoRA's dense part too"
        assert out["olora_added_frozen"] and out["olora_trains_task1"], out
        for key in ("clora_penalty", "clora_grad", "clora_state", "clora_start", "olora_loss", "olora_grad"):
            assert out[key] < 1e-5, (rank, key, out[key])
