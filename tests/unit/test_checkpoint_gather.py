"""A sharded run's checkpoint is gathered piece by piece into the writing process's host memory.

On a real 2-process gloo group with FSDP2-sharded parameters (mcit.sharding), the three
parts of a checkpoint that hold per-parameter tensors (the trainable weights, a method's
per-parameter state, AdamW's moments) are gathered as the runner gathers them. The test
counts the whole (gathered) tensors alive at each gather: at most one at a time, none left
once the state is built (before, every process held all of them on its device until the
checkpoint was written: about 54 GB per GPU for a 7B full fine-tune with ewc). The process
that writes (rank 0) holds exactly the whole state in host memory; the other holds none of it.
"""

from __future__ import annotations

import dataclasses
import weakref

import torch
from torch import nn

import mcit.sharding
from conftest import on_two_gloo_processes
from mcit.distributed import world_from_environment
from mcit.models.hf import trainable_state
from mcit.sharding import Layout, full, local, shard_model, trainable_parameters
from mcit.training.loop import optimizer_state


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(16, 12)  # its own FSDP unit
        self.b = nn.Linear(12, 4)  # in the root unit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def _tensors(tree) -> list:
    """Every leaf of a state tree that is a tensor or stands in for one (``None``)."""
    if isinstance(tree, dict):
        return [t for value in tree.values() for t in _tensors(value)]
    if isinstance(tree, list | tuple):
        return [t for value in tree for t in _tensors(value)]
    return [tree] if tree is None or isinstance(tree, torch.Tensor) else []


def _bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()  # a sharded tensor's numel is the whole one's


def _worker(rank: int) -> dict:
    world = dataclasses.replace(world_from_environment(), sharded=True)
    torch.manual_seed(0)
    model = Net()
    shard_model(model, [model.a])
    params = trainable_parameters(model)
    optimizer = torch.optim.AdamW([p for _, p in params], lr=0.1)
    model(torch.randn(4, 16)).square().mean().backward()
    optimizer.step()
    method_state = {"theta_star": {name: local(p).detach().float().clone() for name, p in params}}

    alive: list[weakref.ref] = []
    peak = 0
    gather = mcit.sharding.full

    def counting_full(tensor):
        nonlocal peak
        whole = gather(tensor)
        if whole is not tensor:  # a gathered whole tensor
            alive.append(weakref.ref(whole))
            peak = max(peak, sum(ref() is not None for ref in alive))
        return whole

    mcit.sharding.full = counting_full
    try:
        keep = world.is_main
        state = {
            "model": trainable_state(model, keep),
            "strategy": Layout(model).gather(method_state, keep),
            "optimizer": optimizer_state(optimizer, keep),
        }
    finally:
        mcit.sharding.full = gather
    held = [t for t in _tensors(state) if t is not None]
    whole_bytes = 2 * sum(_bytes(p) for _, p in params) + sum(
        _bytes(value) for moments in optimizer.state.values() for value in moments.values()
    )
    expected = {name: full(p.detach()) for name, p in params}
    return {
        "gathered": len(alive),
        "peak": peak,
        "left": sum(ref() is not None for ref in alive),
        "held_bytes": sum(_bytes(t) for t in held),
        "whole_bytes": whole_bytes,
        "on_host": all(t.device.type == "cpu" for t in held),
        "exact": all(torch.equal(state["model"][n], t) and torch.equal(state["strategy"]["theta_star"][n], t) for n, t in expected.items())
        if keep else None,
    }


def test_a_sharded_checkpoint_is_gathered_one_tensor_at_a_time_into_the_writers_host_memory():
    writer, other = on_two_gloo_processes(_worker)
    for rank in (writer, other):
        # weights a.weight, a.bias (sharded) x (model, method state, AdamW's two moments)
        assert rank["gathered"] >= 8
        assert rank["peak"] == 1, "more than one whole tensor held at once on a process"
        assert rank["left"] == 0, "a whole tensor outlived the gather (held on the device until written)"
    assert writer["held_bytes"] == writer["whole_bytes"] and writer["on_host"] and writer["exact"]
    assert other["held_bytes"] == 0, "a process that does not write holds part of the checkpoint"
