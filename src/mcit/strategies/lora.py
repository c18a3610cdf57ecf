"""Continual LoRA (Srivastava et al.): one adapter across tasks, or merged after each task and restarted."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from mcit.strategies._lora import Factors, factors, fold, restart
from mcit.strategies.base import STRATEGIES, Context, Stage, Strategy, StrategyOptions

ADAPTER = "default"  # the adapter peft's get_peft_model creates for model.lora
ADAPTERS_ROLE = "language model's adapters"


class LoRAOptions(StrategyOptions):
    merge: bool = Field(
        True,
        description="After each task, merge the adapter into the base weights and train a fresh one on the next task (Srivastava et al.'s best variant); false keeps training one adapter across all tasks.",
    )


@STRATEGIES.register("lora", help="Continual LoRA: merge the adapter into the weights after each task and start a fresh one (or keep one).")
class ContinualLoRA(Strategy):
    """Continual LoRA on the peft adapter of ``model.lora`` (rank, alpha, rsLoRA, target modules).

    The adapter is the one ``model.lora`` describes; when a run names this method and no
    ``model.lora``, the config adds the default one (r 8, alpha 16, every linear layer of the
    language model), and the saved config shows it. Two regimes (option ``merge``):

    - ``merge: true`` (default; Srivastava et al. found merge + fresh adapter, with a rank up
      to half the full one and rsLoRA, the best variant): after each task ``W += scaling * B A``
      for every adapted layer, then A is re-drawn (Kaiming-uniform, seeded by the task) and B
      set to 0, so the next task starts from the merged weights with a zero update.
    - ``merge: false``: one adapter keeps training across tasks (plain LoRA sequential
      fine-tuning).

    The merged base weights are frozen, so task checkpoints (trainable weights only) do not
    hold them: the strategy state keeps each task's (A, B) factors (rank-sized, not a dense
    copy of W) and :meth:`setup_model` re-applies them to a freshly loaded model on resume
    and export, with the same arithmetic, so a resumed run is bit-identical. Because earlier
    tasks live in the base weights, the adapter alone does not reproduce a merged model:
    ``save_models`` and ``mcit export`` write the whole model with the adapter merged.
    """

    options_class = LoRAOptions
    options: LoRAOptions
    peft_lora = "required"
    supports_sharding = True
    stages = {"after_task": Stage.FINAL}  # merge and restart once every method has read the finished adapter

    @classmethod
    def owns(cls, options: LoRAOptions) -> frozenset[str]:
        return frozenset({ADAPTERS_ROLE})

    def __init__(self, options: LoRAOptions | None = None) -> None:
        super().__init__(options)
        self.merged: list[Factors] = []  # one entry per finished task (merge: true)

    def setup_model(self, model: torch.nn.Module, seed: int) -> torch.nn.Module:
        for recorded in self.merged:
            fold(model, ADAPTER, recorded)
        return model

    def after_task(self, ctx: Context) -> None:
        if not self.options.merge:
            return
        recorded = factors(ctx.model, ADAPTER)
        fold(ctx.model, ADAPTER, recorded)
        restart(ctx.model, ADAPTER, ctx.seed)
        self.merged.append(recorded)

    def adapter_export(self) -> bool:
        return not self.merged

    def state_dict(self) -> dict[str, Any]:
        return {"merged": self.merged}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.merged = list(state.get("merged", []))
