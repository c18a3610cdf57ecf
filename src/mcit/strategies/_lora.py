"""Shared pieces of the adapter methods (clora, lora, olora, msgm); not a method itself.

peft keeps each adapted linear layer as a ``LoraLayer`` holding ``lora_A[adapter]`` (in -> r)
and ``lora_B[adapter]`` (r -> out) and its ``scaling[adapter]`` (alpha / r, or alpha / sqrt(r)
with rsLoRA). What the methods add on top: listing the adapters, folding an adapter into its
base weight and restarting it (the same arithmetic when a run merges and when a resumed run
re-applies a recorded merge, so both give the same bits), and seeded re-initialisation.

On a sharded model (FSDP2, :mod:`mcit.sharding`) each process holds rows of every adapter
and base weight: :func:`factors` gathers them whole (a collective: every process calls it,
as every process runs the methods' hooks), :func:`fold` and :func:`restart` compute the
whole update or initial value on every process and write each process's rows of it, so a
sharded run writes the same values as a run on one process.
"""

from __future__ import annotations

import math

import torch

from mcit.seeds import derive_seed
from mcit.sharding import full, local, local_part

Factors = dict[str, dict[str, torch.Tensor]]
"""Per adapted module name: ``{"A": lora_A weight, "B": lora_B weight}`` (CPU copies)."""


def lora_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Every peft ``LoraLayer`` of the model with 2-D (linear) adapters, by module name."""
    from peft.tuners.lora import LoraLayer  # peft is slow to import; only needed once a task starts

    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, LoraLayer) and any(a.weight.dim() == 2 for a in module.lora_A.values())
    }


def lora_units(model: torch.nn.Module) -> dict[str, tuple[torch.nn.Module, str]]:
    """Trainable peft LoRA adapters on 2-D weights, as ``"<module name>/<adapter>" -> (module, adapter)``."""
    units = {}
    for name, module in lora_layers(model).items():
        for adapter, lora_a in module.lora_A.items():
            lora_b = module.lora_B[adapter]
            matrices = lora_a.weight.dim() == 2 and lora_b.weight.dim() == 2
            if matrices and (lora_a.weight.requires_grad or lora_b.weight.requires_grad):
                units[f"{name}/{adapter}"] = (module, adapter)
    return units


def whole_factors(b: torch.Tensor, a: torch.Tensor, detach: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 (B, A) of one adapter, whole where sharded (``full``: an all-gather, differentiable: its
    backward keeps each process's rows of the gradient); detached copies with ``detach``."""
    if detach:
        return full(b.detach()).float().clone(), full(a.detach()).float().clone()
    return full(b).float(), full(a).float()


def factors(model: torch.nn.Module, adapter: str) -> Factors:
    """fp32 CPU copies of one adapter's A and B in every layer that has it (whole where sharded)."""
    recorded = {}
    for name, module in lora_layers(model).items():
        if adapter in module.lora_A:
            b, a = whole_factors(module.lora_B[adapter].weight, module.lora_A[adapter].weight, detach=True)
            recorded[name] = {"A": a.cpu(), "B": b.cpu()}
    return recorded


@torch.no_grad()
def fold(model: torch.nn.Module, adapter: str, recorded: Factors) -> None:
    """Add ``scaling * B @ A`` of each recorded layer to that layer's base weight, in place.

    The product is taken in fp32 on the base weight's device and cast to its dtype, so a
    merge made during a run and the same merge re-applied to a freshly loaded model on
    resume write identical weights.
    """
    layers = lora_layers(model)
    for name, pair in recorded.items():
        module = layers[name]
        weight = module.get_base_layer().weight
        a, b = pair["A"].to(weight.device, torch.float32), pair["B"].to(weight.device, torch.float32)
        delta = (b @ a) * module.scaling[adapter]
        local(weight).add_(local_part(delta, weight).to(weight.dtype))


@torch.no_grad()
def restart(model: torch.nn.Module, adapter: str, seed: int) -> None:
    """Re-initialise an adapter as peft does (A Kaiming-uniform, B zero), seeded per layer."""
    for name, module in lora_layers(model).items():
        if adapter not in module.lora_A:
            continue
        a = module.lora_A[adapter].weight
        fresh = torch.empty(a.shape, dtype=torch.float32)
        torch.nn.init.kaiming_uniform_(fresh, a=math.sqrt(5), generator=torch.Generator().manual_seed(derive_seed(seed, name)))
        local(a).copy_(local_part(fresh, a).to(a.device, a.dtype))
        local(module.lora_B[adapter].weight).zero_()
