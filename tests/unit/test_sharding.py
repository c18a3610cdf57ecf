"""mcit.sharding (FSDP2) on a real 2-process gloo group: each method's sharded arithmetic against
the same arithmetic on the whole tensors in one process.

Every worker builds the same small model, keeps a whole copy as the one-process reference,
shards the other with :func:`mcit.sharding.shard_model` and runs both; it returns the largest
differences, which the test bounds by float summation order (1e-5).
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from conftest import largest_difference, on_two_gloo_processes, tiny_overrides
from mcit.config import load_config
from mcit.distributed import World, world_from_environment
from mcit.errors import UserError
from mcit.runner import Runner
from mcit.sharding import (
    Layout,
    ParameterUse,
    as_shard_of,
    full,
    local,
    local_part,
    shard_model,
    unsharded,
    whole_state,
)
from mcit.strategies import STRATEGIES, Context, TaskView
from mcit.strategies._anchor import Anchor
from mcit.strategies._importance import normalise_mean_one
from mcit.strategies.agem import agem_project_
from mcit.strategies.dgg import scales, streamed_guidance


class Net(nn.Module):
    """Two units (``a`` its own FSDP unit, ``b`` in the root unit) and a layer no forward uses."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 5)  # 5 rows: shards of 3 and 2
        self.b = nn.Linear(5, 3)
        self.unused = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


def _worker(rank: int) -> dict:
    world = dataclasses.replace(world_from_environment(), sharded=True)
    torch.manual_seed(0)
    reference = Net()
    model = copy.deepcopy(reference)
    shard_model(model, [model.a])
    one = Context(reference, TaskView(1, "t", []), 0, torch.device("cpu"))
    ctx = Context(model, TaskView(1, "t", []), 0, torch.device("cpu"), world=world)
    sharded = dict(ctx.trainable())
    generator = torch.Generator().manual_seed(1)
    names = [n for n, _ in one.trainable()]
    theta = {n: p.detach() + 0.1 * torch.randn(p.shape, generator=generator) for n, p in one.trainable()}
    omega = {n: torch.rand(p.shape, generator=generator) for n, p in one.trainable()}
    out: dict[str, float | bool] = {}

    # The penalty and its recorded gradient (SI), with the step's task loss over a batch split in two.
    x = torch.randn(4, 6, generator=generator)
    whole_anchor, anchor = Anchor(), Anchor()
    whole_anchor.theta_star, whole_anchor.importance = theta, omega
    anchor.theta_star = {n: local_part(t, sharded[n]).clone() for n, t in theta.items()}
    anchor.importance = {n: local_part(t, sharded[n]).clone() for n, t in omega.items()}
    expected = whole_anchor.penalised(one, reference(x).square().mean(), 0.7, record_gradients=True)
    expected.backward()
    ctx.shard_weight = 0.5  # this process's micro-batch weight: half of the batch
    mine = x[2 * rank : 2 * rank + 2]
    loss = anchor.penalised(ctx, model(mine).square().mean(), 0.7, record_gradients=True) * 0.5
    loss.backward()
    total = loss.detach().reshape(1).clone()
    world.sum_tensors_([total])
    out["loss"] = abs(float(total) - float(expected))
    out["grad"] = max(largest_difference(full(sharded[n].grad), p.grad) for n, p in one.trainable() if n in sharded)
    recorded = Layout(model).gather(anchor.penalty_grads.by_name(names))
    out["penalty_grads"] = max(largest_difference(recorded[n], t) for n, t in whole_anchor.penalty_grads.by_name(names).items())

    # The same penalty with theta* and Omega in host memory (train.offload_method_state), streamed shard by shard.
    model.zero_grad(set_to_none=True)
    streamed = Anchor()
    streamed.theta_star, streamed.importance = dict(anchor.theta_star), dict(anchor.importance)
    value = streamed.penalty(dataclasses.replace(ctx, state_device=torch.device("cpu", 0), shard_weight=1.0), 0.7)
    value.backward()
    parts = torch.stack([value.detach()])
    world.sum_tensors_([parts])
    whole_value = whole_anchor.penalty(one, 0.7)
    out["streamed_penalty"] = abs(float(parts[0]) - float(whole_value)) + max(
        largest_difference(full(sharded[n].grad), 2 * 0.7 * omega[n] * (reference.get_parameter(n).detach() - theta[n])) for n in names
    )
    model.zero_grad(set_to_none=True)

    # ParameterUse: the layer no forward ran got FSDP's zero gradient; it must end with none, the others keep theirs.
    use = ParameterUse(model)
    model.zero_grad(set_to_none=True)
    model(mine).sum().backward()
    had_zero = sharded["unused.weight"].grad is not None and float(full(sharded["unused.weight"].grad).abs().sum()) == 0
    use.drop_unused_(world)
    out["unused_dropped"] = had_zero and sharded["unused.weight"].grad is None and sharded["a.weight"].grad is not None
    use.close()

    # DGG's norms and A-GEM's dot products over the shards.
    shards = [local(sharded[n]).detach() for n in names]
    displacement = [s - local_part(theta[n], sharded[n]) for s, n in zip(shards, names)]
    grads = [local_part(omega[n] - 0.5, sharded[n]).clone() for n in names]
    whole_d = [reference.get_parameter(n).detach() - theta[n] for n in names]
    whole_g = [omega[n] - 0.5 for n in names]
    for norm in ("global", "per_tensor"):
        got, want = scales(displacement, grads, norm, world), scales(whole_d, whole_g, norm)
        out[f"dgg_{norm}"] = max(abs(a - b) for a, b in zip(got, want))
    # DGG with theta* in host memory: .grad += d * scale, one shard tensor at a time.
    params = [sharded[n] for n in names]
    for p, g in zip(params, grads):
        p.grad = as_shard_of(g.clone(), p)
    streamed_guidance(params, [local_part(theta[n], sharded[n]).clone() for n in names], "global", world)
    (scale,) = set(scales(whole_d, whole_g, "global"))
    out["dgg_streamed"] = max(largest_difference(full(p.grad), g + d * scale) for p, g, d in zip(params, whole_g, whole_d))
    model.zero_grad(set_to_none=True)
    reference_grads = [local_part(-t, sharded[n]).clone() for n, t in zip(names, whole_g)]  # g.g_ref < 0: projects
    agem_project_(grads, reference_grads, world)
    whole_projected = [g.clone() for g in whole_g]
    agem_project_(whole_projected, [-g for g in whole_g])
    gathered = Layout(model).gather(dict(zip(names, grads)))
    out["agem"] = max(largest_difference(gathered[n], g) for n, g in zip(names, whole_projected))

    # Mean-1 normalisation over all shards; the state tree's round trip through whole tensors.
    normalised = Layout(model).gather(normalise_mean_one(anchor.importance, world))
    out["normalise"] = max(largest_difference(normalised[n], t) for n, t in normalise_mean_one(omega).items())
    tree = {"anchor": {"theta_star": theta, "tasks": 3}, "other": [torch.ones(2)]}
    back = Layout(model).gather(Layout(model).scatter(tree))
    out["round_trip"] = max(largest_difference(back["anchor"]["theta_star"][n], t) for n, t in theta.items())
    out["tree_kept"] = back["anchor"]["tasks"] == 3 and torch.equal(back["other"][0], torch.ones(2))

    # Whole weights for evaluation: a different number of forwards per process, no collective among them.
    with torch.no_grad(), unsharded(model):
        outputs = [model(x) for _ in range(rank + 1)]
    out["unsharded"] = max(largest_difference(o, reference(x)) for o in outputs)
    out["resharded"] = type(dict(model.named_parameters())["b.weight"]).__name__ == "DTensor"
    state = whole_state(model, keep=rank == 0)
    out["whole_state"] = (state is None) if rank else max(largest_difference(state[n], t) for n, t in reference.state_dict().items())
    return out


@pytest.mark.slow
def test_methods_on_sharded_parameters_match_one_process():
    results = on_two_gloo_processes(_worker)
    for rank in (0, 1):
        out = dict(results[rank])
        for key in ("loss", "grad", "penalty_grads", "streamed_penalty", "dgg_global", "dgg_streamed", "dgg_per_tensor", "agem", "normalise", "round_trip", "unsharded"):
            assert out[key] < 1e-5, (rank, key, out[key])
        assert out["unused_dropped"], "a parameter no process ran must keep no gradient (AdamW then leaves it alone)"
        assert out["tree_kept"] and out["resharded"]
    assert results[0]["whole_state"] < 1e-6 and results[1]["whole_state"] is True


def test_a_method_that_does_not_run_sharded_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    """A method registered without ``shards`` (a user's own, say) is refused on sharded parameters, naming those that run."""
    from mcit.strategies.seqft import SeqFT

    class Unsharded(SeqFT):
        supports_sharding = False

    monkeypatch.setitem(STRATEGIES._items, "unsharded", Unsharded)
    monkeypatch.setitem(STRATEGIES._help, "unsharded", "a method that keeps whole-parameter state")
    config = load_config(None, tiny_overrides(method="[unsharded]"))
    with pytest.raises(UserError, match="method unsharded does not run on sharded parameters.*Methods that do: agem, clora, dgg"):
        Runner(config, tmp_path / "run", world=World(0, 2, sharded=True)).run()
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
