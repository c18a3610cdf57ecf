"""O-LoRA (Wang et al. 2023): a new LoRA per task, kept orthogonal to the frozen LoRAs of earlier tasks."""

from __future__ import annotations

import copy
from typing import Any

import torch
from pydantic import Field

from mcit.data.collate import Batch
from mcit.sharding import full, reshard
from mcit.strategies._lora import Factors, factors, lora_layers, restart
from mcit.strategies.base import STRATEGIES, Context, Stage, Strategy, StrategyOptions
from mcit.strategies.lora import ADAPTER, ADAPTERS_ROLE


class OLoRAOptions(StrategyOptions):
    lambda1: float = Field(
        0.5, ge=0, description="Weight of the orthogonality term sum |A_s A_t^T| (reference code: 0.5; MCITlib's LLaVA port: 0.05)."
    )
    lambda2: float = Field(0.0, ge=0, description="Weight of ||(A_t, B_t)||^2 on the current task's LoRA (reference: 0).")


def task_adapter(index: int) -> str:
    """peft adapter name of task ``index``: task 0 trains the adapter model.lora created."""
    return ADAPTER if index == 0 else f"task{index}"


@STRATEGIES.register("olora", help="O-LoRA: a new LoRA per task, orthogonal to the frozen LoRAs of earlier tasks, all active.")
class OLoRA(Strategy):
    """O-LoRA on the peft adapters of ``model.lora``.

    Task t trains its own LoRA pair (A_t, B_t) on every adapted layer (task 0: the adapter
    ``model.lora`` created; later tasks: a new peft adapter of the same shape, initialised
    as peft does, seeded by the task). The pairs of earlier tasks are frozen and stay active
    in the forward pass (``W x + sum_{s<=t} scaling B_s A_s x``), so the total rank grows by
    r per task (the run's rows record the model's parameter count after every task).
    Loss = task loss + ``lambda1 * sum_layers sum_{s<t} sum |A_s A_t^T|`` (elementwise L1 of
    the r x r product, as the reference code) + ``lambda2 * ||(A_t, B_t)||^2`` (squared norm,
    as METHODS.md writes it; the reference code adds the unsquared norm).

    The frozen pairs are not trainable weights, so the strategy state keeps them (rank-sized
    factors) and :meth:`setup_model` re-adds them on resume and export. Several adapters
    are active, so checkpoints and ``mcit export`` write the whole model with every adapter
    merged (exact: each pair is a fixed linear update).

    On sharded parameters (FSDP2) every task's adapter is added, frozen and inactive, before
    the model is sharded (:meth:`before_sharding`), and switched on at its task's start; the
    terms of the loss are computed on the current adapter gathered whole on every process,
    counted once over the processes (:meth:`~mcit.strategies.base.Context.whole_term`).
    """

    options_class = OLoRAOptions
    options: OLoRAOptions
    peft_lora = "required"
    supports_sharding = True
    # The new task's adapter is switched on before any method records the trainable weights,
    # and switched off after every method has read the finished task.
    stages = {"before_task": Stage.ARRANGE, "after_task": Stage.FINAL}

    @classmethod
    def owns(cls, options: OLoRAOptions) -> frozenset[str]:
        return frozenset({ADAPTERS_ROLE})

    def __init__(self, options: OLoRAOptions | None = None) -> None:
        super().__init__(options)
        self.finished: list[Factors] = []  # (A, B) of every finished task's adapter, in task order
        self._old_a: dict[str, torch.Tensor] | None = None  # per layer: the frozen A_s stacked, (sum r_s, in)

    @staticmethod
    def _activate(model: torch.nn.Module, count: int, trainable: int | None) -> None:
        """Make the first ``count`` task adapters active; only ``trainable`` (an index) trains."""
        reshard(model)  # sharded: the switches go to the sharded parameters
        names = [task_adapter(i) for i in range(count)]
        model.base_model.set_adapter(names)
        for layer in lora_layers(model).values():
            for i, name in enumerate(names):
                for part in (layer.lora_A[name], layer.lora_B[name]):
                    part.weight.requires_grad_(i == trainable)

    @staticmethod
    def _add(model: torch.nn.Module, index: int) -> None:
        if index > 0 and task_adapter(index) not in model.peft_config:
            model.add_adapter(task_adapter(index), copy.deepcopy(model.peft_config[ADAPTER]))

    def setup_model(self, model: torch.nn.Module, seed: int) -> torch.nn.Module:
        if not self.finished:
            return model
        with torch.no_grad():
            for index, recorded in enumerate(self.finished):
                self._add(model, index)
                layers = lora_layers(model)
                for name, pair in recorded.items():
                    layers[name].lora_A[task_adapter(index)].weight.copy_(pair["A"])
                    layers[name].lora_B[task_adapter(index)].weight.copy_(pair["B"])
        self._activate(model, len(self.finished), trainable=None)
        return model

    def before_sharding(self, model: torch.nn.Module, tasks: int) -> None:
        active = list(model.base_model.active_adapters)
        training = {name: p.requires_grad for name, p in model.named_parameters()}
        for index in range(len(self.finished), tasks):
            self._add(model, index)
        model.base_model.set_adapter(active)
        for name, param in model.named_parameters():
            param.requires_grad_(training.get(name, False))

    def before_task(self, ctx: Context) -> None:
        index = len(self.finished)
        self._add(ctx.model, index)
        if index > 0:  # seeded, so a resumed task starts from the same adapter (a mid-task checkpoint then overwrites it)
            restart(ctx.model, task_adapter(index), ctx.seed)
        self._activate(ctx.model, index + 1, trainable=index)
        self._old_a = None
        if index > 0:  # the finished adapters' A, from their recorded (whole) factors: no gather
            self._old_a = {
                name: torch.cat([self.finished[s][name]["A"] for s in range(index)]).to(ctx.device)
                for name in lora_layers(ctx.model)
            }

    def _current(self, ctx: Context, part: str) -> dict[str, torch.Tensor]:
        """Per adapted layer: the current task's ``part`` ("A" or "B"), whole (gathered where sharded: differentiable)."""
        current = task_adapter(len(self.finished))
        trainable = dict(ctx.trainable())  # sharded: the sharded parameters, not a unit's gathered ones
        return {
            name: full(trainable.get(f"{name}.lora_{part}.{current}.weight", getattr(layer, f"lora_{part}")[current].weight))
            for name, layer in lora_layers(ctx.model).items()
        }

    def loss(self, ctx: Context, batch: Batch, outputs: Any, loss: torch.Tensor) -> torch.Tensor:
        if not (self._old_a and self.options.lambda1 > 0) and self.options.lambda2 == 0:
            return loss
        a = self._current(ctx, "A")
        if self._old_a and self.options.lambda1 > 0:
            orthogonal = sum((old @ a[name].T).abs().sum() for name, old in self._old_a.items())
            loss = loss + self.options.lambda1 * ctx.whole_term(orthogonal)
        if self.options.lambda2 > 0:
            b = self._current(ctx, "B")
            squared = sum(a[name].square().sum() + b[name].square().sum() for name in a)
            loss = loss + self.options.lambda2 * ctx.whole_term(squared)
        return loss

    def after_task(self, ctx: Context) -> None:
        index = len(self.finished)
        self.finished.append(factors(ctx.model, task_adapter(index)))
        self._activate(ctx.model, index + 1, trainable=None)
        self._old_a = None

    def adapter_export(self) -> bool:
        return len(self.finished) <= 1

    def state_dict(self) -> dict[str, Any]:
        return {"finished": self.finished}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.finished = list(state.get("finished", []))
