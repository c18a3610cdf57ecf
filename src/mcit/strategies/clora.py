"""C-LoRA (Smith et al. 2023): penalise the new weight update where past updates were large."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from mcit.data.collate import Batch
from mcit.sharding import local
from mcit.strategies._importance import Tensors, tensors_state, to_device
from mcit.strategies._lora import lora_units, whole_factors
from mcit.strategies._low_rank import LowRank, compress, hadamard_square_sum
from mcit.strategies.base import STRATEGIES, Context, Strategy, StrategyOptions


class CLoRAOptions(StrategyOptions):
    strength: float = Field(
        1.0, ge=0, description="lambda in lambda * sum_W ||P_W (.) DeltaW_t||_F^2 (P^2 normalised to mean 1 by default)."
    )
    normalise: bool = Field(
        True, description="Divide the penalty by mean(P^2) over all elements of all adapted weights (scale-free lambda)."
    )


@STRATEGIES.register("clora", help="C-LoRA: penalise the new LoRA update elementwise where past updates were large.")
class CLoRA(Strategy):
    """C-LoRA: task loss + ``strength * sum_W ||P_W (.) DeltaW_t||_F^2 / c``.

    For every adapted weight W, ``P_W = sum_{t'<t} DeltaW_t'`` is the sum of the updates of
    all finished tasks and ``DeltaW_t`` the update of the current task so far. Choices:

    - peft LoRA (one adapter trained across tasks): W's update is ``D = scaling * B @ A``
      (peft's ``get_delta_weight``). The strategy keeps copies of B and A from the start of
      the task (two small matrices), ``DeltaW_t = scaling * (B A - B_start A_start)`` and,
      at the end of the task, ``P += DeltaW_t``. While the adapter keeps training this is
      ``P = D at the end of the previous task`` (D = 0 before the first, B starts at 0),
      and it stays right if something merges the adapter and starts a fresh one between
      tasks. P is kept factored, ``P = U V`` (:mod:`~mcit.strategies._low_rank`), and
      recompressed to its rank after each task: rank r while one adapter keeps training
      (the updates telescope), r more per task when adapters are merged and restarted;
      never a dense matrix per adapted weight (25.9 GB for LoRA on every linear layer of
      a 7B model). The penalty ``||P (.) DeltaW_t||^2`` is computed from the factors of
      both (``DeltaW_t = X Y`` with X = s [B - B0, B0], Y = [A; A - A0]).
    - Trainable parameters outside LoRA modules (full fine-tuning, or parts listed in
      ``model.trainable`` next to LoRA) get the same rule with ``DeltaW_t = theta -
      theta_start_of_task``, so ``P = theta*_{t-1} - theta_0`` and the penalty is a quadratic
      pull to theta*_{t-1} with Omega = P^2.
    - ``normalise`` (default on): divide by ``c = mean(P^2)`` over all elements of all
      weights, so ``P^2 / c`` is an Omega of mean 1 like ewc/mas/si; the default strength
      1.0 then means the same average pull as l2. The normalisation is global (not per
      weight) so weights that changed more in the past stay more protected.
    - No penalty during the first task (P does not exist yet).

    On sharded parameters (FSDP2) the LoRA factors are gathered whole on every process
    (rank-sized: 2 all-gathers per adapted layer and micro-batch) and P's factors are kept
    whole on every process; every process computes the LoRA part of the penalty whole and
    counts it once (:func:`~mcit.sharding.counted_once`). Dense P and the dense updates are
    this process's shards, their part of the penalty and of ``c`` summed over the shards.
    """

    options_class = CLoRAOptions
    options: CLoRAOptions
    supports_sharding = True

    def __init__(self, options: CLoRAOptions | None = None) -> None:
        super().__init__(options)
        self.factors: dict[str, LowRank] = {}  # LoRA units: P_W = U V
        self.past: Tensors = {}  # other trainable parameters: P dense, the parameter's size
        self.tasks = 0
        self.start: dict[str, list[torch.Tensor]] | None = None  # per unit: [B, A] or [theta] at task start
        self._scale: float | None = None

    def _units(self, ctx: Context) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor, float]], dict[str, torch.nn.Parameter]]:
        """LoRA units as (B, A, scaling) and the trainable parameters that belong to none of them.

        B and A are the trainable parameters by name (of a sharded model, the sharded ones,
        which the optimizer steps), not the module attributes, which hold the gathered
        weights of a unit between its forward and its backward.
        """
        trainable = dict(ctx.trainable())
        lora = {}
        for key, (module, adapter) in lora_units(ctx.model).items():
            name = key.rsplit("/", 1)[0]
            b = trainable.get(f"{name}.lora_B.{adapter}.weight", module.lora_B[adapter].weight)
            a = trainable.get(f"{name}.lora_A.{adapter}.weight", module.lora_A[adapter].weight)
            lora[key] = (b, a, module.scaling[adapter])
        inside = {id(p) for b, a, _ in lora.values() for p in (b, a)}
        dense = {name: p for name, p in trainable.items() if id(p) not in inside}
        return lora, dense

    def _updates(self, ctx: Context, detach: bool) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], Tensors]:
        """DeltaW_t of every unit, fp32: LoRA units as factors (X, Y) with DeltaW_t = X Y, the others dense."""
        if self.start is None:
            raise RuntimeError("clora: no task start recorded (before_task was not called)")
        lora, params = self._units(ctx)
        factored: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for key, (b, a, scaling) in lora.items():
            b, a = whole_factors(b, a, detach)
            b0, a0 = self.start[key][0].to(b.device), self.start[key][1].to(a.device)
            # B A - B0 A0 = (B - B0) A + B0 (A - A0): exactly 0 at the task start, and no
            # cancellation between two large products when the update is small.
            factored[key] = (torch.cat([scaling * (b - b0), scaling * b0], dim=1), torch.cat([a, a - a0], dim=0))
        dense: Tensors = {}
        for name, param in params.items():
            theta = local(param).detach().float() if detach else local(param).float()
            dense[name] = theta - self.start[name][0].to(theta.device)
        return factored, dense

    def before_task(self, ctx: Context) -> None:
        lora, params = self._units(ctx)
        self.start = {key: list(whole_factors(b, a, detach=True)) for key, (b, a, _) in lora.items()}
        self.start.update({name: [local(p).detach().float().clone()] for name, p in params.items()})

    def _normaliser(self, ctx: Context) -> float:
        if self._scale is None:
            # Dense P of the parameters outside LoRA: this process's shards where sharded, summed
            # over them; that of a LoRA unit (an older checkpoint's, keyed "<module>/<adapter>") is whole.
            shards = [t for key, t in self.past.items() if "/" not in key]
            whole = [t for key, t in self.past.items() if "/" in key]
            dense = torch.tensor([float(sum(t.numel() for t in shards)), sum(float(t.double().square().sum()) for t in shards)], dtype=torch.float64)
            ctx.world.sum_over_shards_([dense])
            count = sum(f.numel for f in self.factors.values()) + sum(t.numel() for t in whole) + float(dense[0])
            square = sum(float(f.square_sum()) for f in self.factors.values()) + float(dense[1])
            square += sum(float(t.double().square().sum()) for t in whole)
            mean_square = square / max(count, 1)
            self._scale = mean_square if self.options.normalise and mean_square > 0 else 1.0
        return self._scale

    def penalty(self, ctx: Context) -> torch.Tensor | None:
        """``sum_W ||P_W (.) DeltaW_t||_F^2 / c``, or None during the first task."""
        if self.tasks == 0:
            return None
        self.factors = {key: f.to(ctx.device) for key, f in self.factors.items()}
        self.past = to_device(self.past, ctx.device)
        whole = torch.zeros((), device=ctx.device, dtype=torch.float32)  # the LoRA units' part: whole on every process
        factored, dense = self._updates(ctx, detach=False)
        for key, (x, y) in factored.items():  # a weight that appeared after the last task has no past
            if key in self.factors:
                whole = whole + hadamard_square_sum(self.factors[key], x, y)
            elif key in self.past:  # a dense P from a checkpoint of before the factored form
                whole = whole + (self.past[key].to(x.device) * (x @ y)).square().sum()
        shard = torch.zeros((), device=ctx.device, dtype=torch.float32)  # the dense part: this process's shards where sharded
        for name, update in dense.items():
            if name in self.past:
                shard = shard + (self.past[name] * update).square().sum()
        # Sharded: the whole LoRA part counted once over the processes, each process's dense part once.
        return (ctx.whole_term(whole) + ctx.shard_term(shard)) / self._normaliser(ctx)

    def loss(self, ctx: Context, batch: Batch, outputs: Any, loss: torch.Tensor) -> torch.Tensor:
        penalty = self.penalty(ctx)
        return loss if penalty is None else loss + self.options.strength * penalty

    def after_task(self, ctx: Context) -> None:
        factored, dense = self._updates(ctx, detach=True)
        for key, (x, y) in factored.items():
            if key in self.past:  # dense from an older checkpoint: stays dense
                self.past[key] = self.past[key].to(x.device) + x @ y
            elif key in self.factors:
                self.factors[key] = self.factors[key].to(x.device).plus(x, y)
            else:
                self.factors[key] = compress(x, y)
        for name, update in dense.items():
            self.past[name] = self.past[name].to(update.device) + update if name in self.past else update
        self.tasks += 1
        self.start, self._scale = None, None

    def state_dict(self) -> dict[str, Any]:
        return {
            "past": tensors_state(self.past) if self.past else None,
            "factors_u": tensors_state({key: f.u for key, f in self.factors.items()}) if self.factors else None,
            "factors_v": tensors_state({key: f.v for key, f in self.factors.items()}) if self.factors else None,
            "tasks": self.tasks,
            "start": self.start,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.past = dict(state.get("past") or {})
        u, v = state.get("factors_u") or {}, state.get("factors_v") or {}
        self.factors = {key: LowRank(u[key], v[key]) for key in u}
        self.tasks = int(state.get("tasks", 0))
        self.start = state.get("start")
        self._scale = None
