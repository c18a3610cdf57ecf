"""train.offload_method_state: the methods' vectors in host memory, streamed through the device tensor by tensor.

On this CPU machine "host memory" and "the device" are the same memory; a context whose
``state_device`` is ``cpu:0`` while the model is on ``cpu`` still takes every streamed path
(the methods compare the two devices), so the streamed code runs here as it would beside a GPU.
"""

from __future__ import annotations

import pytest
import torch

import mcit.strategies._penalty
import mcit.strategies.dgg
from digit_model import DigitCollator, DigitLM
from mcit.config import load_config
from mcit.data.sample import Sample
from mcit.strategies import STRATEGIES, Context, StrategyChain, TaskView
from mcit.strategies._penalty import PenaltyVectors, QuadraticPenalty
from mcit.training.loop import train
from mcit.training.settings import TrainConfig

HOST = torch.device("cpu", 0)  # != torch.device("cpu"): the methods stream as if it were elsewhere


def test_the_flag_reaches_the_methods_through_the_context():
    assert load_config(None, ["train.offload_method_state=true"]).train.offload_method_state is True
    ctx = Context(DigitLM(), TaskView(0, "a", []), 0, torch.device("cpu"), state_device=HOST)
    assert ctx.streams_state and ctx.vectors_device == HOST
    assert not Context(DigitLM(), TaskView(0, "a", []), 0, torch.device("cpu")).streams_state


@pytest.mark.parametrize("with_importance", [True, False])
def test_the_streamed_penalty_equals_the_whole_vector_one(with_importance):
    shapes = [(3, 4), (5,), (2, 2, 2)]
    values = {}
    for streamed in (False, True):
        params = [torch.nn.Parameter(torch.randn(s, generator=torch.Generator().manual_seed(i))) for i, s in enumerate(shapes)]
        theta = [torch.randn(s, generator=torch.Generator().manual_seed(10 + i)) for i, s in enumerate(shapes)]
        omega = [torch.rand(s, generator=torch.Generator().manual_seed(20 + i)) for i, s in enumerate(shapes)] if with_importance else None
        vectors = PenaltyVectors.of(theta, omega, torch.device("cpu"), streamed=streamed)
        value = QuadraticPenalty.apply(vectors, 0.7, None, *params)
        value.backward()
        values[streamed] = (value.item(), [p.grad.clone() for p in params], vectors.scratch is None)
    (flat, flat_grads, _), (streamed, streamed_grads, no_scratch) = values[False], values[True]
    assert streamed == pytest.approx(flat, rel=1e-6)
    for a, b in zip(flat_grads, streamed_grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert no_scratch, "streaming needs no scratch vector"


def train_two_tasks(chain: str, state_device: torch.device | None) -> tuple[DigitLM, dict]:
    methods = load_config(None, [f"method={chain}"]).method
    strategy = StrategyChain([(m.name, STRATEGIES.get(m.name)(STRATEGIES.get(m.name).options_class(**m.options()))) for m in methods])
    model = DigitLM()
    for index, task in enumerate(["a", "b"]):
        samples = [Sample(f"{task}-{i}", str(i % 10), str((3 * i + index) % 10), skill=task) for i in range(8)]
        ctx = Context(model, TaskView(index, task, samples), index, torch.device("cpu"), DigitCollator(), state_device=state_device)
        strategy.before_task(ctx)
        train(ctx, list(strategy.train_data(ctx, samples)), strategy, TrainConfig(epochs=2, batch_size=4, lr=0.05))
        strategy.after_task(ctx)
    return model, strategy.state_dict()


def tensors(tree, prefix=""):
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in tensors(value, f"{prefix}/{key}").items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for i, value in enumerate(tree) for k, v in tensors(value, f"{prefix}/{i}").items()}
    return {prefix: tree} if isinstance(tree, torch.Tensor) else {}


@pytest.mark.parametrize(
    "chain", ["[l2]", "[ewc]", "[mas]", "[si]", "[tir]", "[{name: dgg, guidance_only: true, alpha: 1.0}]",
              "[{name: dgg, guidance_only: true, alpha: 1.0, norm: per_tensor}]"],
)  # fmt: skip
def test_every_method_with_vectors_trains_the_same_streamed(chain, monkeypatch):
    """Two tasks with the vectors kept on the device and streamed from host memory: the same weights and state."""
    calls = []
    for module, name in ((mcit.strategies._penalty, "streamed_penalty"), (mcit.strategies.dgg, "streamed_guidance")):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _original=original, **k: calls.append(1) or _original(*a, **k))
    kept_model, kept_state = train_two_tasks(chain, None)
    assert not calls
    streamed_model, streamed_state = train_two_tasks(chain, HOST)
    assert calls, "the streamed path was not taken"
    untrained = DigitLM()
    for (name, a), b, c in zip(kept_model.named_parameters(), streamed_model.parameters(), untrained.parameters()):
        assert not torch.equal(a, c), f"{name} did not train; the comparison would be vacuous"
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    kept, streamed = tensors(kept_state), tensors(streamed_state)
    assert kept.keys() == streamed.keys() and kept
    for key in kept:
        torch.testing.assert_close(kept[key].float(), streamed[key].float(), rtol=1e-5, atol=1e-6, msg=key)
