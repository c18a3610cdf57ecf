"""Synaptic intelligence: importance = each parameter's share of the loss decrease along the path."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from mcit.data.collate import Batch
from mcit.strategies._importance import Anchor, Tensors, normalise_mean_one, snapshot, tensors_state
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

    - Task-loss gradient: ``after_backward`` sees the gradient of task loss + penalty, so
      the penalty's gradient ``2 c Omega (theta - theta*)`` is computed analytically and
      subtracted (exact up to fp32 rounding; no extra backward or stored graph). It is the
      gradient before clipping; strategies earlier in a chain that change ``.grad`` or add
      their own penalty are seen as part of the task loss, so list si first.
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

    def __init__(self, options: SIOptions | None = None) -> None:
        super().__init__(options)
        self.anchor = Anchor()
        self.omega_sum: Tensors | None = None
        self.theta_start: Tensors | None = None
        self.path_integral: Tensors | None = None
        self.previous_theta: Tensors | None = None
        self.previous_grad: Tensors | None = None

    def before_task(self, ctx: Context) -> None:
        self.theta_start = snapshot(ctx)
        self.path_integral = {name: torch.zeros_like(t) for name, t in self.theta_start.items()}
        self.previous_theta = self.previous_grad = None

    def loss(self, ctx: Context, batch: Batch, outputs: Any, loss: torch.Tensor) -> torch.Tensor:
        return self.anchor.penalised(ctx, loss, self.options.strength)

    def _accumulate(self, theta: Tensors) -> None:
        """Add the last step's ``-g * delta`` to w, with delta = ``theta`` - theta at that step."""
        if self.previous_theta is None or self.previous_grad is None or self.path_integral is None:
            return
        for name, w in self.path_integral.items():
            w.sub_(self.previous_grad[name] * (theta[name] - self.previous_theta[name]))

    def after_backward(self, ctx: Context, batch: Batch) -> None:
        theta = snapshot(ctx)
        self._accumulate(theta)
        grads = {
            name: torch.zeros_like(theta[name]) if p.grad is None else p.grad.detach().float().clone()
            for name, p in ctx.trainable()
        }
        if self.anchor.theta_star is not None:
            importance, anchor, c = self.anchor.importance, self.anchor.theta_star, self.options.strength
            for name, g in grads.items():
                g.sub_(2 * c * importance[name] * (theta[name] - anchor[name]))
        self.previous_theta, self.previous_grad = theta, grads

    def after_task(self, ctx: Context) -> None:
        theta_end = snapshot(ctx)
        self._accumulate(theta_end)
        if self.path_integral is None or self.theta_start is None:
            raise RuntimeError("si: after_task without before_task")
        contribution = {
            name: w / ((theta_end[name] - self.theta_start[name]).square() + self.options.damping)
            for name, w in self.path_integral.items()
        }
        if self.options.clamp_negative:
            contribution = {name: t.clamp(min=0) for name, t in contribution.items()}
        if self.omega_sum is None:
            self.omega_sum = contribution
        else:
            self.omega_sum = {name: self.omega_sum[name].to(t.device) + t for name, t in contribution.items()}
        self.anchor.theta_star = theta_end
        self.anchor.tasks += 1
        self._set_importance()
        self.theta_start = self.path_integral = self.previous_theta = self.previous_grad = None

    def _set_importance(self) -> None:
        if self.omega_sum is None:
            return
        self.anchor.importance = normalise_mean_one(self.omega_sum) if self.options.normalise else dict(self.omega_sum)

    def state_dict(self) -> dict[str, Any]:
        return {
            "theta_star": tensors_state(self.anchor.theta_star),
            "tasks": self.anchor.tasks,
            "omega_sum": tensors_state(self.omega_sum),
            "running": {
                "theta_start": tensors_state(self.theta_start),
                "path_integral": tensors_state(self.path_integral),
                "previous_theta": tensors_state(self.previous_theta),
                "previous_grad": tensors_state(self.previous_grad),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.anchor.load_state_dict({"theta_star": state.get("theta_star"), "tasks": state.get("tasks", 0)})
        self.omega_sum = state.get("omega_sum")
        running = state.get("running", {})
        self.theta_start = running.get("theta_start")
        self.path_integral = running.get("path_integral")
        self.previous_theta = running.get("previous_theta")
        self.previous_grad = running.get("previous_grad")
        self._set_importance()
