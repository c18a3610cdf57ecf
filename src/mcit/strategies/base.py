"""The strategy interface: no-op hooks that the training loop calls in a fixed order.

A continual-learning method subclasses :class:`Strategy` once and overrides the hooks it
needs. Methods compose as a list (:class:`StrategyChain`), never by subclassing one another.
Hooks return values (``train_data``, ``loss``) instead of mutating shared state; the one
exception is ``after_backward``, whose job is gradient surgery on ``param.grad``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict

from mcit.data.collate import Batch
from mcit.data.sample import Sample, SampleLookup
from mcit.distributed import SINGLE, World
from mcit.errors import UserError
from mcit.registry import Registry
from mcit.sharding import counted_once, trainable_parameters


class Stage(IntEnum):
    """When one method's hook runs among a chain's, by what it does, whatever the list order.

    A chain calls each hook in stage order; within a stage, by method name (the hooks of one
    stage do not see each other's work, and a fixed order keeps float sums the same bits).
    """

    ARRANGE = 0  # changes which parameters train (olora, eproj switch their task's module on)
    READ = 1  # reads the model, the batch, the gradient or the finished task as they stand (the default)
    EDIT = 2  # changes the gradient (dgg's guidance), after every method has read it
    FINAL = 3  # sees every other method's work: A-GEM's projection, merges and restarts, freezing a task's module


class StrategyOptions(BaseModel):
    """Options of a strategy; subclasses add fields (each with a description)."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class TaskView:
    """What a strategy may see of the current task: its name, index and training data.

    Evaluation data and future tasks are deliberately absent.
    """

    index: int
    name: str
    train: Sequence[Sample]


@dataclass
class Context:
    """Shared, read-mostly state handed to every hook.

    Attributes:
        model: The model being trained (its trainable parameters may be changed by hooks
            that exist for that purpose, e.g. gradient surgery).
        task: View of the current task.
        seed: Seed of the current task (derive all randomness from it).
        device: Where training runs.
        step: Optimizer step within the task (updated by the loop).
        micro_batch: Index of the micro-batch within the step (0 without accumulation).
        collator: Encodes extra batches (e.g. a replay batch for A-GEM).
        lookup: Materialises the sample references a strategy restored from a checkpoint
            (task name, sample id) from the run's data; ``None`` outside a run.
        world: The training processes (:mod:`mcit.distributed`): each trains on its share of
            every step's batch, and the loop sums the gradients over them before
            ``after_backward``; a hook that keeps what one process's share contributed
            (SI's penalty gradient) sums it with ``world.sum_tensors_``.
        state_device: Where the methods keep their per-parameter vectors (anchors,
            importances, SI's path): ``None`` for ``device``; the CPU with
            ``train.offload_method_state``, streamed through ``device`` tensor by tensor.
        shard_weight: With sharded parameters (``world.sharded``), the loop's weights of
            this process's micro-batches of the step, summed: a term that a hook computes
            on this process's shard of the parameters (a penalty) is divided by it, so that
            the shard's part enters the step once.
    """

    model: torch.nn.Module
    task: TaskView
    seed: int
    device: torch.device
    collator: Any = None
    step: int = 0
    micro_batch: int = 0
    lookup: SampleLookup | None = None
    world: World = SINGLE
    state_device: torch.device | None = None
    shard_weight: float = 1.0

    @property
    def vectors_device(self) -> torch.device:
        """Where a method keeps a vector laid out like the trainable parameters (see ``state_device``)."""
        return self.device if self.state_device is None else self.state_device

    @property
    def streams_state(self) -> bool:
        """Whether the methods' vectors live away from the training device (streamed through it tensor by tensor)."""
        return self.vectors_device != self.device

    def trainable(self) -> list[tuple[str, torch.nn.Parameter]]:
        """The trainable parameters by name (of a sharded model, the sharded ones: :func:`mcit.sharding.trainable_parameters`)."""
        return trainable_parameters(self.model)

    def shard_term(self, value):
        """A loss term (or its scale) computed on this process's shards of the parameters, for ``loss``.

        Divided by ``shard_weight`` (this process's micro-batch weights of the step, which the
        loop multiplies each loss by), so each shard's part enters the step once; unchanged
        on one process.
        """
        if not self.world.sharded:
            return value
        return value / self.shard_weight if self.shard_weight > 0 else value

    def whole_term(self, value: torch.Tensor) -> torch.Tensor:
        """A loss term that every process computes whole (from gathered tensors), for ``loss``.

        Added to each micro-batch's loss, it enters the step once over all processes, with
        its whole gradient on every process (:func:`mcit.sharding.counted_once`, then
        :meth:`shard_term`); unchanged on one process.
        """
        if not self.world.sharded:
            return value
        return self.shard_term(counted_once(value, self.world.size))


class Strategy:
    """Base class with no-op hooks. Subclasses set ``options_class`` for their options."""

    options_class: ClassVar[type[StrategyOptions]] = StrategyOptions
    # False for methods that define the whole training regime (e.g. the joint upper bound)
    # and so cannot be chained with others.
    composable: ClassVar[bool] = True
    # Whether the method works on the peft LoRA adapter of ``model.lora``: "required" (the
    # config adds the default adapter when none is set), "refused" (the method brings its
    # own adapters) or "any".
    peft_lora: ClassVar[Literal["any", "required", "refused"]] = "any"
    # Whether the method works on sharded parameters (FSDP2, mcit.sharding): its per-parameter
    # state on each process's shards (by parameter name), its reductions summed over them.
    supports_sharding: ClassVar[bool] = False
    # The stage of each hook that is not Stage.READ (see Stage), by hook name.
    stages: ClassVar[dict[str, Stage]] = {}

    @classmethod
    def stage(cls, hook: str) -> Stage:
        """When this method's ``hook`` runs in a chain (:class:`Stage`)."""
        return cls.stages.get(hook, Stage.READ)

    @classmethod
    def provides(cls, options: StrategyOptions) -> frozenset[str]:
        """Roles this method plays in a chain (e.g. mixing a replay buffer into training)."""
        return frozenset()

    @classmethod
    def requires(cls, options: StrategyOptions) -> dict[str, str]:
        """Roles another method of the chain must provide, each with the hint shown when none does."""
        return {}

    @classmethod
    def owns(cls, options: StrategyOptions) -> frozenset[str]:
        """Parts of the model (its adapters, its projector) or of the objective (the task loss) this
        method manages; two methods of a chain cannot own the same one."""
        return frozenset()

    def __init__(self, options: StrategyOptions | None = None) -> None:
        self.options = options if options is not None else self.options_class()

    def setup_model(self, model: torch.nn.Module, seed: int) -> torch.nn.Module:
        """Rebuild what this method changed in the model outside its trainable weights.

        Called once on a freshly built model, after :meth:`load_state_dict` when a run
        resumes (or is exported) and before the trainable weights are loaded: re-add the
        modules a method added (adapters of finished tasks, experts) and re-apply what it
        wrote into frozen weights (merged adapters), from its state. On a fresh run the
        state is empty: a method may add modules here but must leave the model's outputs
        unchanged. ``seed`` is the run's seed. Returns the model (possibly wrapped).
        """
        return model

    def before_sharding(self, model: torch.nn.Module, tasks: int) -> None:
        """Add, frozen, every module this method would add when one of the stream's ``tasks`` starts.

        Called on a run with sharded parameters (FSDP2) only, after :meth:`setup_model` and
        before the model is sharded: FSDP2 shards the model once, and a module added later
        belongs to no FSDP unit (its gradient would not be summed over the processes nor
        its weights sharded). :meth:`before_task` then switches the task's module on
        instead of adding it (on the sharded parameters: :func:`mcit.sharding.trainable_parameters`).
        The model's outputs must not change.
        """

    def export_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model in a form other tools load, e.g. added modules folded into the weights.

        Must not change ``model`` (the live one, during a run): a method that folds works
        on a copy and returns it.

        Raises:
            UserError: If that cannot be done exactly; the message says where.
        """
        return model

    def export_state(self, model: torch.nn.Module, whole: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """:meth:`export_model` on a state dict, for a model that cannot be copied (sharded).

        ``whole`` is ``model.state_dict()`` with whole tensors; returns the state dict of the
        model :meth:`export_model` would return (added modules folded in), without changing
        ``model`` or ``whole``.

        Raises:
            UserError: As :meth:`export_model`.
        """
        return whole

    def adapter_export(self) -> bool:
        """Whether the peft adapter alone, on the base model, reproduces the trained model."""
        return True

    def before_task(self, ctx: Context) -> None:
        """Called before training on ``ctx.task``."""

    def train_data(self, ctx: Context, data: Sequence[Sample]) -> Sequence[Sample]:
        """Return the samples to train on for this task (e.g. with replay mixed in)."""
        return data

    def before_forward(self, ctx: Context, batch: Batch) -> None:
        """Called before each training forward of the model on ``batch`` (a micro-batch), in its autocast.

        For work that needs the model between two steps' backward passes (LwF's teacher
        forward with other weights swapped in); with sharded parameters every process calls
        it for each of the step's micro-batches, padding included.
        """

    def loss(self, ctx: Context, batch: Batch, outputs: Any, loss: torch.Tensor) -> torch.Tensor:
        """Return the loss to minimise (e.g. task loss plus a penalty).

        With ``train.micro_batch_size`` it is called once per micro-batch (``ctx.micro_batch``
        counts them) and the loop weights each result by the micro-batch's share of the
        step's answer tokens; the weights sum to 1, so a term that does not depend on the
        batch (a penalty) enters the step exactly once and a token mean stays a token mean.
        """
        return loss

    def after_backward(self, ctx: Context, batch: Batch) -> None:
        """Edit gradients in place after the step's backward passes (gradient surgery).

        Called once per optimizer step, when every micro-batch's gradient is accumulated;
        ``batch`` is the step's last micro-batch.
        """

    def after_task(self, ctx: Context) -> None:
        """Called after training on ``ctx.task`` (importance, buffers, snapshots)."""

    def before_eval(self, ctx: Context) -> None:
        """Called before evaluation (e.g. expert routing)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: a tree of dicts, lists, tensors and JSON scalars."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


STRATEGIES: Registry[type[Strategy]] = Registry("method")


def _parts(strategies: Sequence[tuple[str, Strategy]]):
    """The named methods of a chain, a chain inside it (mSGM) by its parts."""
    for name, strategy in strategies:
        if isinstance(strategy, StrategyChain):
            yield from _parts(strategy.strategies)
        else:
            yield name, strategy


def _in_stage_order(parts: list[tuple[str, Strategy]], hook: str) -> list[Strategy]:
    """The methods whose ``hook`` the chain calls, in stage order, then by name (a method listed
    twice, which the config refuses, keeps its list position)."""
    keyed = sorted(((type(one).stage(hook), name, position), one) for position, (name, one) in enumerate(parts))
    return [one for _, one in keyed]


HOOKS = (
    "setup_model", "before_sharding", "export_model", "export_state", "before_task", "train_data",
    "before_forward", "loss", "after_backward", "after_task", "before_eval",
)  # fmt: skip


class StrategyChain(Strategy):
    """Several strategies, each hook called in :class:`Stage` order: the list order does not matter.

    Data flows through ``train_data`` and ``loss``. A chain inside a chain (mSGM) is called
    part by part, so its parts take their stages among the outer chain's methods.
    """

    def __init__(self, strategies: Sequence[tuple[str, Strategy]]) -> None:
        super().__init__()
        self.strategies = list(strategies)  # as listed: names the state of each (state_dict)
        parts = list(_parts(self.strategies))
        self._order = {hook: _in_stage_order(parts, hook) for hook in HOOKS}

    def check_shards(self) -> None:
        """Refuse a chain with a method that does not run on sharded parameters (FSDP2) yet."""
        refused = [name for name, one in self.strategies if not one.supports_sharding]
        if refused:
            shardable = ", ".join(sorted(name for name in STRATEGIES.names() if STRATEGIES.get(name).supports_sharding))
            raise UserError(
                f"method {', '.join(refused)} does not run on sharded parameters (FSDP) yet; run it data parallel "
                f"(configs/accelerate/ddp.yaml). Methods that do: {shardable}"
            )

    def setup_model(self, model: torch.nn.Module, seed: int) -> torch.nn.Module:
        for strategy in self._order["setup_model"]:
            model = strategy.setup_model(model, seed)
        return model

    def before_sharding(self, model: torch.nn.Module, tasks: int) -> None:
        for strategy in self._order["before_sharding"]:
            strategy.before_sharding(model, tasks)

    def export_model(self, model: torch.nn.Module) -> torch.nn.Module:
        for strategy in self._order["export_model"]:
            model = strategy.export_model(model)
        return model

    def export_state(self, model: torch.nn.Module, whole: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        for strategy in self._order["export_state"]:
            whole = strategy.export_state(model, whole)
        return whole

    def adapter_export(self) -> bool:
        return all(strategy.adapter_export() for _, strategy in self.strategies)

    def before_task(self, ctx: Context) -> None:
        for strategy in self._order["before_task"]:
            strategy.before_task(ctx)

    def train_data(self, ctx: Context, data: Sequence[Sample]) -> Sequence[Sample]:
        for strategy in self._order["train_data"]:
            data = strategy.train_data(ctx, data)
        return data

    def before_forward(self, ctx: Context, batch: Batch) -> None:
        for strategy in self._order["before_forward"]:
            strategy.before_forward(ctx, batch)

    def loss(self, ctx: Context, batch: Batch, outputs: Any, loss: torch.Tensor) -> torch.Tensor:
        for strategy in self._order["loss"]:
            loss = strategy.loss(ctx, batch, outputs, loss)
        return loss

    def after_backward(self, ctx: Context, batch: Batch) -> None:
        for strategy in self._order["after_backward"]:
            strategy.after_backward(ctx, batch)

    def after_task(self, ctx: Context) -> None:
        for strategy in self._order["after_task"]:
            strategy.after_task(ctx)

    def before_eval(self, ctx: Context) -> None:
        for strategy in self._order["before_eval"]:
            strategy.before_eval(ctx)

    def state_dict(self) -> dict[str, Any]:
        return {f"{i}:{name}": strategy.state_dict() for i, (name, strategy) in enumerate(self.strategies)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for i, (name, strategy) in enumerate(self.strategies):
            strategy.load_state_dict(state.get(f"{i}:{name}", {}))
