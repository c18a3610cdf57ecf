"""MoELoRA as CoIN defines it: per adapted linear, a router mixes E low-rank experts, dense softmax."""

from __future__ import annotations

import copy
import math

import torch
from pydantic import Field, model_validator

from mcit.errors import UserError
from mcit.models.hf import lora_targets, part_of
from mcit.seeds import derive_seed
from mcit.strategies.base import STRATEGIES, Strategy, StrategyOptions
from mcit.strategies.lora import ADAPTERS_ROLE


class MoELoRAOptions(StrategyOptions):
    r: int = Field(8, ge=1, description="Total rank per adapted layer, split evenly over the experts (CoIN: 128).")
    alpha: float = Field(16.0, gt=0, description="Scaling numerator: the update is alpha / r times the mixture (CoIN: 256).")
    experts: int = Field(4, ge=1, description="Experts per adapted layer, each of rank r / experts (CoIN: 8; MCITlib UCIT: 6).")
    target_modules: list[str] | None = Field(
        None, description="Linear layers of the language model to adapt, by name or suffix (as model.lora.target_modules); null: every one."
    )

    @model_validator(mode="after")
    def _whole_expert_rank(self) -> MoELoRAOptions:
        if self.r % self.experts:
            raise ValueError(f"r ({self.r}) must be a multiple of experts ({self.experts})")
        return self


class MoELoRALinear(torch.nn.Module):
    """``W x + (alpha / r) * sum_e softmax(router(x))_e * B_e A_e x`` around a frozen linear layer.

    The experts' factors are stored concatenated (``moelora_A``: ``(E * r_e, in)``,
    ``moelora_B``: ``(out, E * r_e)``) so the mixture is two matrix products: the rank
    activations ``A x`` are scaled by their expert's gate, then projected by ``B``.
    Initialised as LoRA (A Kaiming-uniform, B zero; the router as ``nn.Linear``), from a
    seed, so the wrapped model computes exactly what the plain one did.
    """

    def __init__(self, base: torch.nn.Linear, rank: int, alpha: float, experts: int, seed: int) -> None:
        super().__init__()
        self.base = base
        self.experts, self.expert_rank, self.scaling = experts, rank // experts, alpha / rank
        generator = torch.Generator().manual_seed(seed)
        weight = base.weight
        a = torch.empty(rank, base.in_features)
        router = torch.empty(experts, base.in_features)
        torch.nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
        torch.nn.init.kaiming_uniform_(router, a=math.sqrt(5), generator=generator)
        self.moelora_A = torch.nn.Parameter(a.to(weight.device, weight.dtype))
        self.moelora_B = torch.nn.Parameter(torch.zeros(base.out_features, rank, device=weight.device, dtype=weight.dtype))
        self.moelora_router = torch.nn.Parameter(router.to(weight.device, weight.dtype))

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x @ self.moelora_router.T, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = (x @ self.moelora_A.T).unflatten(-1, (self.experts, self.expert_rank))
        mixed = (hidden * self.gates(x).unsqueeze(-1)).flatten(-2)
        return self.base(x) + self.scaling * (mixed @ self.moelora_B.T)

    def constant_gates(self) -> torch.Tensor | None:
        """The gates when they do not depend on the input (every router row equal, or one expert), else None."""
        return constant_gates(self.moelora_router.detach())

    @torch.no_grad()
    def folded(self, gates: torch.Tensor) -> torch.nn.Linear:
        """The base layer with ``scaling * sum_e gates_e B_e A_e`` added to its weight (a copy)."""
        linear = copy.deepcopy(self.base)
        linear.weight.add_(self.delta(self.moelora_A, self.moelora_B, gates).to(linear.weight.dtype))
        return linear

    def delta(self, a: torch.Tensor, b: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """``scaling * sum_e gates_e B_e A_e`` of factors ``a``, ``b`` laid out as this layer's (fp32)."""
        a = a.float().unflatten(0, (self.experts, self.expert_rank))
        b = b.float().unflatten(1, (self.experts, self.expert_rank))
        return torch.einsum("e,oer,eri->oi", gates.to(a.device), b, a) * self.scaling


def constant_gates(router: torch.Tensor) -> torch.Tensor | None:
    """A router's gates when they do not depend on the input (every row equal, or one expert), else None."""
    experts = router.shape[0]
    if experts == 1 or torch.equal(router, router[:1].expand_as(router)):
        return torch.full((experts,), 1.0 / experts, dtype=torch.float32, device=router.device)
    return None


def _replace(model: torch.nn.Module, name: str, module: torch.nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


@STRATEGIES.register("moelora", help="MoELoRA (CoIN): a router mixes E low-rank experts in every adapted linear layer.")
class MoELoRA(Strategy):
    """MoELoRA as CoIN defines it: every adapted linear layer of the language model gets a
    router ``Linear(in, E, bias=False)`` giving a dense per-token softmax over E experts,
    each a LoRA of rank r/E: ``W x + sum_e softmax(router(x))_e * B_e A_e x * alpha / r``.
    No top-k, no load-balancing loss. peft has no such adapter, so the layer is mcit's own
    (:class:`MoELoRALinear`); its rank, alpha, experts and target layers are this method's
    options, and ``model.lora`` must be null. The language model's base weights are frozen
    (as with LoRA); the experts and routers train through every task, together with the
    parts ``model.trainable`` names outside the language model.

    The experts are trainable weights, so checkpoints hold them and :meth:`setup_model`
    only rebuilds the layers (seeded) before they are loaded. Export: a router that depends
    on the input cannot be folded into W exactly, so :meth:`export_model` folds only when
    every router is input-independent (all rows equal, or one expert) and otherwise says
    how many layers are not; runs then keep mcit's form of their checkpoints only.
    """

    options_class = MoELoRAOptions
    options: MoELoRAOptions
    supports_sharding = True  # its layers are added once, in setup_model, before the model is sharded
    peft_lora = "refused"

    @classmethod
    def owns(cls, options: MoELoRAOptions) -> frozenset[str]:
        return frozenset({ADAPTERS_ROLE})

    def setup_model(self, model: torch.nn.Module, seed: int) -> torch.nn.Module:
        o = self.options
        for name, parameter in model.named_parameters():
            if part_of(name) == "language_model":
                parameter.requires_grad_(False)
        for name in lora_targets(model, o.target_modules):
            layer = MoELoRALinear(model.get_submodule(name), o.r, o.alpha, o.experts, derive_seed(seed, "moelora", name))
            _replace(model, name, layer)
        return model

    def adapter_export(self) -> bool:
        return False

    def export_model(self, model: torch.nn.Module) -> torch.nn.Module:
        layers = self._foldable(model, {n: m.moelora_router.detach() for n, m in _layers(model).items()})
        plain = copy.deepcopy(model)
        for name, layer in layers.items():
            _replace(plain, name, layer.folded(layer.constant_gates()))
        return plain

    def export_state(self, model: torch.nn.Module, whole: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        layers = self._foldable(model, {n: whole[f"{n}.moelora_router"] for n in _layers(model)})
        owned = {f"{name}.{key}" for name, layer in layers.items() for key in layer.state_dict()}
        plain = {key: tensor for key, tensor in whole.items() if key not in owned}
        for name, layer in layers.items():
            weight = whole[f"{name}.base.weight"]
            delta = layer.delta(whole[f"{name}.moelora_A"], whole[f"{name}.moelora_B"], constant_gates(whole[f"{name}.moelora_router"]))
            plain[f"{name}.weight"] = weight + delta.to(weight.dtype)
            if f"{name}.base.bias" in whole:
                plain[f"{name}.bias"] = whole[f"{name}.base.bias"]
        return plain

    @staticmethod
    def _foldable(model: torch.nn.Module, routers: dict[str, torch.Tensor]) -> dict[str, MoELoRALinear]:
        """The adapted layers, if every router (by layer name) is input-independent; else UserError naming how many are not."""
        varying = [n for n, router in routers.items() if constant_gates(router) is None]
        if varying:
            raise UserError(
                f"moelora: {len(varying)} of {len(routers)} adapted layers have an input-dependent router "
                f"(e.g. {varying[0]}), so their mixture cannot be folded into the weights exactly"
            )
        return _layers(model)


def _layers(model: torch.nn.Module) -> dict[str, MoELoRALinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, MoELoRALinear)}
