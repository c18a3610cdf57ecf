"""DGG's ablation without norm scaling (``norm: none``): the displacement itself is the guidance."""

from __future__ import annotations

import pytest
import torch

from mcit.strategies.base import Context, TaskView
from mcit.strategies.dgg import DGGOptions, DynamicGradientGuidance, scales


def test_unscaled_guidance_is_the_displacement_whatever_the_gradient():
    d = [torch.tensor([3.0, 4.0]), torch.tensor([0.0, 0.0])]
    small = [torch.tensor([0.6, 0.8]), torch.tensor([1.0, 0.0])]
    assert scales(d, small, "none") == [1.0, None]  # no clipping; nothing where the tensor has not moved
    assert scales(d, small, "global") == [pytest.approx(2**0.5 / 5)] * 2  # what the ablation removes: ||g|| / ||d||


def test_unscaled_guidance_through_the_hook_adds_the_raw_displacement():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    ctx = Context(model, TaskView(0, "t", []), seed=0, device=torch.device("cpu"))
    dgg = DynamicGradientGuidance(DGGOptions(alpha=1.0, norm="none", guidance_only=True))
    dgg.before_task(ctx)  # theta* = 0
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[30.0, 40.0]]))  # d = [30, 40], ||d|| = 50
    model.weight.grad = torch.tensor([[0.0, 1.0]])  # ||g|| = 1: the clipped guidance would be d / 50
    dgg.after_backward(ctx, None)
    assert torch.equal(model.weight.grad, torch.tensor([[30.0, 41.0]]))


def test_an_unknown_norm_is_refused():
    with pytest.raises(ValueError, match="valid: global, per_tensor, none"):
        scales([torch.ones(1)], [torch.ones(1)], "spectral")
