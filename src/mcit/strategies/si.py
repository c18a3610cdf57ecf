"""Synaptic intelligence: importance = each parameter's share of the loss decrease along the path."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from mcit.data.collate import Batch
from mcit.distributed import World
from mcit.sharding import local, local_grads
from mcit.strategies._anchor import Anchor
from mcit.strategies._importance import Tensors, anchored, normalise_mean_one, tensors_state, trainable_lists
from mcit.strategies._penalty import FlatTensors
from mcit.strategies.base import STRATEGIES, Context, Strategy, StrategyOptions


class SIOptions(StrategyOptions):
    strength: float = Field(
        1.0, ge=0, description="c in c sum Omega (theta - theta*)^2 (Omega normalised to mean 1 by default)."
    )
    damping: float = Field(1e-3, gt=0, description="xi in Omega += w / ((theta_end - theta_start)^2 + xi).")
    clamp_negative: bool = Field(
        True, description="Clamp each task's contribution w / (...) at 0, so Omega never rewards moving away."
    )
    normalise: bool = Field(True, description="Scale the accumulated Omega to mean 1 before using it in the penalty.")


@STRATEGIES.register("si")
class SI(Strategy):
    """SI: task loss + ``strength * sum_i Omega_i (theta_i - theta*_i)^2``.

    During a task, ``w_i += -g_i * delta_i`` for every optimizer step, where g is the
    task-loss gradient at the step and delta the parameter change the optimizer actually
    made. At task end ``Omega_i += w_i / ((theta_i^end - theta_i^start)^2 + damping)`` and w
    resets; theta* = theta^end. Choices METHODS.md leaves to us:

    - Task-loss gradient: ``after_backward`` sees the gradient of task loss + penalty; the
      penalty's backward records the gradient ``2 c Omega (theta - theta*)`` it added
      (analytic, see :class:`~mcit.strategies._penalty.QuadraticPenalty`) and exactly that
      is subtracted (no extra backward or stored graph). It is the gradient before clipping;
      other methods' penalties are seen as part of the task loss. Its ``after_backward``
      reads the gradient before any method edits it (dgg, agem act in later stages:
      :class:`~mcit.strategies.base.Stage`), whatever the chain's order.
    - delta of step k is measured at the next ``after_backward`` (or at ``after_task`` for
      the last step) as theta now minus theta stored at step k: it includes gradient
      clipping, AdamW, weight decay and the learning-rate schedule.
    - ``clamp_negative`` (default on): negative contributions (parameters whose movement
      raised the loss) are clamped to 0, so the penalty stays convex.
    - ``normalise`` (default on): the penalty uses the accumulated Omega scaled to mean 1
      (the raw sum is what is stored and accumulated), so ``strength`` is scale-free; the
      default 1.0 matches l2/ewc/mas.
    """

    options_class = SIOptions
    options: SIOptions
    supports_sharding = True

    def __init__(self, options: SIOptions | None = None) -> None:
        super().__init__(options)
        self.anchor = Anchor()
        self.omega_sum: Tensors | None = None
        self.path: _Path | None = None
        self._importance_pending = False  # Omega is derived from omega_sum at the next penalty

    def before_task(self, ctx: Context) -> None:
        names, params = trainable_lists(ctx)
        theta_start = FlatTensors.copy_of([local(p) for p in params], ctx.vectors_device)
        self.path = _Path(list(names), theta_start, theta_start.zeros_like())

    def loss(self, ctx: Context, batch: Batch, outputs: Any, loss: torch.Tensor) -> torch.Tensor:
        if self._importance_pending:
            self._set_importance(ctx.world)
        return self.anchor.penalised(ctx, loss, self.options.strength, record_gradients=True)

    def _running(self, ctx: Context, names: tuple[str, ...]) -> _Path:
        if self.path is None:
            raise RuntimeError("si: a training step or after_task without before_task")
        return self.path.aligned(names, ctx.vectors_device)

    def after_backward(self, ctx: Context, batch: Batch) -> None:
        names, params = trainable_lists(ctx)
        path = self._running(ctx, names)
        path.accumulate([local(p) for p in params])
        penalty_grads, self.anchor.penalty_grads = self.anchor.penalty_grads, None
        penalty_names = anchored(ctx, self.anchor.theta_star)[0] if penalty_grads is not None else names
        if penalty_names != names:  # a module added this task trains free of the penalty: 0 there
            by_name, penalty_grads = penalty_grads.by_name(penalty_names), path.theta_start.zeros_like()
            for name, view in zip(names, penalty_grads.views):
                if name in by_name:
                    view.copy_(by_name[name])
        if penalty_grads is not None and not ctx.world.sharded:
            # this process's share of it, as the gradients are summed (sharded: its shards' whole part)
            ctx.world.sum_tensors_([penalty_grads.flat])
        path.record_grad(local_grads(params), penalty_grads)

    def after_task(self, ctx: Context) -> None:
        names, params = trainable_lists(ctx)
        path = self._running(ctx, names)
        theta_end = path.accumulate([local(p) for p in params])
        # w / ((theta_end - theta_start)^2 + xi), over all tensors at once.
        moved = (theta_end.flat - path.theta_start.flat).square_().add_(self.options.damping)
        contribution = FlatTensors(path.path_integral.flat / moved, theta_end.shapes)
        if self.options.clamp_negative:
            contribution.flat.clamp_(min=0)
        if self.omega_sum is None:
            self.omega_sum = contribution.by_name(names)
        else:
            self.omega_sum = {
                name: self.omega_sum[name].to(t.device) + t if name in self.omega_sum else t  # a module added this task
                for name, t in contribution.by_name(names).items()
            }
        self.anchor.theta_star = theta_end.by_name(names)
        self.anchor.tasks += 1
        self._set_importance(ctx.world)
        self.path = None

    def _set_importance(self, world: World) -> None:
        """Omega from its running sum (normalised over all processes' shards where sharded)."""
        self._importance_pending = False
        if self.omega_sum is None:
            return
        self.anchor.importance = normalise_mean_one(self.omega_sum, world) if self.options.normalise else dict(self.omega_sum)

    def state_dict(self) -> dict[str, Any]:
        return {
            "theta_star": tensors_state(self.anchor.theta_star),
            "tasks": self.anchor.tasks,
            "omega_sum": tensors_state(self.omega_sum),
            "running": (self.path.state_dict() if self.path is not None else _Path.empty_state()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.anchor.load_state_dict({"theta_star": state.get("theta_star"), "tasks": state.get("tasks", 0)})
        self.omega_sum = state.get("omega_sum")
        self.path = _Path.from_state(state.get("running", {}))
        self._importance_pending = True  # set at the next penalty, where the processes are known


class _Path:
    """SI's running state within a task, as :class:`FlatTensors` laid out like the parameters.

    One vector per quantity, so a step is a few whole-vector operations (plus one copy per
    tensor to read theta and one to read the gradient); the vectors are allocated once per
    task and overwritten in place. The state format stays by parameter name.

    Attributes:
        names: Parameter names, the layout of every vector.
        theta_start: theta (fp32) at the start of the task.
        path_integral: w, the running ``-sum g * delta``.
        previous_theta: theta (fp32) at the last step, or ``None`` before the first.
        previous_grad: Task-loss gradient (fp32) at the last step, or ``None``.
    """

    fields = ("theta_start", "path_integral", "previous_theta", "previous_grad")

    def __init__(
        self,
        names: list[str],
        theta_start: FlatTensors,
        path_integral: FlatTensors,
        previous_theta: FlatTensors | None = None,
        previous_grad: FlatTensors | None = None,
    ) -> None:
        self.names = names
        self.theta_start = theta_start
        self.path_integral = path_integral
        self.previous_theta = previous_theta
        self.previous_grad = previous_grad
        self.device = theta_start.flat.device
        self._spare: FlatTensors | None = None  # receives theta at the next step

    def aligned(self, names: tuple[str, ...], device: torch.device) -> _Path:
        """The vectors laid out as ``names``, on ``device`` (a loaded state comes in the
        store's key order, on CPU)."""
        if tuple(self.names) != names or self.device != device:
            for field in self.fields:
                vector = getattr(self, field)
                if vector is not None:
                    by_name = vector.by_name(self.names)
                    setattr(self, field, FlatTensors.copy_of([by_name[name] for name in names], device))
            self.names, self.device, self._spare = list(names), device, None
        return self

    def accumulate(self, params: list[torch.nn.Parameter]) -> FlatTensors:
        """Add the last step's ``-g * delta`` to w (delta = theta now - theta at that step);
        keep theta now as ``previous_theta`` and return it."""
        theta = self._spare if self._spare is not None else self.theta_start.zeros_like()
        theta.copy_from(params)
        previous, self._spare = self.previous_theta, None
        if previous is not None and self.previous_grad is not None:
            # previous <- theta_then - theta_now = -delta, then w += g * (-delta); the old
            # buffer is free afterwards and takes theta at the next step (no copy of theta).
            previous.flat.sub_(theta.flat)
            self.path_integral.flat.addcmul_(self.previous_grad.flat, previous.flat)
            self._spare = previous
        self.previous_theta = theta
        return theta

    def record_grad(self, grads: list[torch.Tensor], penalty_grads: FlatTensors | None) -> None:
        """Keep this step's task-loss gradient: ``grads`` minus the penalty's."""
        if self.previous_grad is None:
            self.previous_grad = self.theta_start.zeros_like()
        self.previous_grad.copy_from(grads)
        if penalty_grads is not None:
            self.previous_grad.flat.sub_(penalty_grads.flat.to(self.previous_grad.flat.device))

    def state_dict(self) -> dict[str, Any]:
        return {field: _by_name(self.names, getattr(self, field)) for field in self.fields}

    @staticmethod
    def empty_state() -> dict[str, Any]:
        return dict.fromkeys(_Path.fields)

    @staticmethod
    def from_state(running: dict[str, Any]) -> _Path | None:
        theta_start, path_integral = running.get("theta_start"), running.get("path_integral")
        if theta_start is None or path_integral is None:
            return None
        names = list(theta_start)
        vectors = [
            None if running.get(field) is None else FlatTensors.copy_of([running[field][name] for name in names])
            for field in _Path.fields
        ]
        return _Path(names, *vectors)


def _by_name(names: list[str], vector: FlatTensors | None) -> dict[str, torch.Tensor] | None:
    return None if vector is None else vector.by_name(names)
