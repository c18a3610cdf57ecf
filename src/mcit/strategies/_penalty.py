"""The quadratic penalty of the regularization family, written for speed (l2, ewc, mas, si, tir).

``scale * sum_i Omega_i (theta_i - theta*_i)^2`` runs at every training step. theta* and
Omega are kept in :class:`FlatTensors` (all tensors back to back in one fp32 vector, built
once per task by :class:`~mcit.strategies._anchor.Anchor`), and the penalty is one autograd
node (:class:`QuadraticPenalty`) whose gradient ``2 scale Omega (theta - theta*)`` is written
out analytically: a handful of whole-vector operations per step instead of about ten small
autograd ops per tensor. :func:`streamed_penalty` is the same with theta* and Omega in host
memory (``train.offload_method_state``).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.autograd.function import once_differentiable


class FlatTensors:
    """Tensors stored back to back in one fp32 vector, with a view of it shaped like each.

    An operation over all trainable parameters is then one operation on ``flat`` rather than
    one per tensor (on CPU a list operation still dispatches per tensor, and most parameters
    of a small model are tiny). Filling it from the parameters costs one copy per tensor.

    Attributes:
        flat: The vector.
        shapes: The tensors' shapes, in order.
        views: One view of ``flat`` per tensor, in order, with that tensor's shape.
    """

    def __init__(self, flat: torch.Tensor, shapes: Sequence[torch.Size]) -> None:
        self.flat = flat
        self.shapes = list(shapes)
        chunks = flat.split([shape.numel() for shape in self.shapes]) if self.shapes else ()
        self.views = [chunk.view(shape) for chunk, shape in zip(chunks, self.shapes)]

    @classmethod
    def empty_like(cls, tensors: Sequence[torch.Tensor], device: torch.device | None = None) -> FlatTensors:
        """An uninitialised vector laid out like ``tensors`` (on ``device``, else theirs)."""
        device = device if device is not None else (tensors[0].device if tensors else torch.device("cpu"))
        total = sum(t.numel() for t in tensors)
        return cls(torch.empty(total, dtype=torch.float32, device=device), [t.shape for t in tensors])

    @classmethod
    def copy_of(cls, tensors: Sequence[torch.Tensor], device: torch.device | None = None) -> FlatTensors:
        """An fp32 copy of ``tensors`` (on ``device``, else theirs)."""
        out = cls.empty_like(tensors, device)
        out.copy_from(tensors)
        return out

    def copy_from(self, tensors: Sequence[torch.Tensor]) -> None:
        """Overwrite with ``tensors`` (same shapes; any dtype and device: cast and moved)."""
        if self.views:
            with torch.no_grad():
                tensors = list(tensors)
                if all(t.device == self.flat.device for t in tensors):
                    torch._foreach_copy_(self.views, tensors)
                else:  # from the training device into host memory (train.offload_method_state)
                    for view, tensor in zip(self.views, tensors):
                        view.copy_(tensor)

    def zeros_like(self) -> FlatTensors:
        return FlatTensors(torch.zeros_like(self.flat), self.shapes)

    def by_name(self, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """The views by tensor name (``names`` in the layout's order)."""
        return dict(zip(names, self.views))


class _Token:
    """A weak-referenceable marker; an autograd node holds it for as long as its graph lives."""

    __slots__ = ("__weakref__",)


@dataclass
class PenaltyVectors:
    """What :class:`QuadraticPenalty` needs besides the parameters, laid out like them.

    Attributes:
        theta_star: theta*.
        importance: Omega, or ``None`` for Omega = 1.
        streamed: theta* and Omega are in host memory, away from the parameters: each
            forward streams them through the parameters' device (:func:`streamed_penalty`).
        scratch: Overwritten by every forward (theta, then theta - theta*); ``None`` until
            the first forward, and kept ``None`` when ``streamed``.
        gradient: The gradient vector, on the parameters' device, kept and reused across
            steps while no live graph still holds it (``None`` until the first forward).
        hand_over_copy: Backward hands autograd a copy of the gradient instead of views of
            it: with sharded parameters autograd takes the tensors it gets as the
            parameters' ``.grad`` and FSDP then adds the task gradient into them in place.
    """

    theta_star: FlatTensors
    importance: FlatTensors | None
    streamed: bool = False
    hand_over_copy: bool = False
    scratch: FlatTensors | None = None
    gradient: FlatTensors | None = None
    _holder: weakref.ref | None = None

    def scratch_vector(self) -> FlatTensors:
        if self.scratch is None:
            self.scratch = FlatTensors(torch.empty_like(self.theta_star.flat), self.theta_star.shapes)
        return self.scratch

    def gradient_for(self, fctx: Any, device: torch.device) -> FlatTensors:
        """A vector for one forward's gradient: the kept one unless the graph of an earlier
        forward is still alive (it may yet be backpropagated), else a new one.

        In the training loop the last step's graph is freed when ``loss`` is reassigned,
        before the next forward, so the kept vector is reused (no allocation, no page faults).
        """
        shapes = self.theta_star.shapes
        if self._holder is not None and self._holder() is not None:
            return FlatTensors(torch.empty_like(self.theta_star.flat, device=device), shapes)
        if self.gradient is None or self.gradient.flat.device != device:
            self.gradient = FlatTensors(torch.empty_like(self.theta_star.flat, device=device), shapes)
        fctx.token = _Token()
        self._holder = weakref.ref(fctx.token)
        return self.gradient

    @classmethod
    def of(
        cls,
        theta_star: Sequence[torch.Tensor],
        importance: Sequence[torch.Tensor] | None,
        device: torch.device,
        streamed: bool = False,
    ) -> PenaltyVectors:
        """fp32 copies on ``device`` of theta* and Omega given as tensor lists (pinned in host
        memory when CUDA is there, so streaming them to it does not wait)."""
        theta = FlatTensors.copy_of(theta_star, device)
        omega = None if importance is None else FlatTensors.copy_of(importance, device)
        if streamed and device.type == "cpu" and torch.cuda.is_available():
            theta = FlatTensors(theta.flat.pin_memory(), theta.shapes)
            omega = None if omega is None else FlatTensors(omega.flat.pin_memory(), omega.shapes)
        return cls(theta, omega, streamed)


class QuadraticPenalty(torch.autograd.Function):
    """``scale * sum_i Omega_i (theta_i - theta*_i)^2`` as one autograd node with an analytic gradient.

    Same value and gradient as the per-tensor autograd expression
    ``scale * sum((Omega * (param.float() - theta*).square()).sum())`` up to fp32 rounding,
    for a copy of the parameters into a scratch vector and a few whole-vector operations. It
    stays in the autograd graph (rather than adding its gradient to ``.grad`` in
    ``after_backward``) so that everything downstream is unchanged: the loss hook still
    returns task loss + penalty, the gradient reaches ``.grad`` in ``loss.backward()`` before
    any strategy's ``after_backward`` runs (gradient surgery and the loop's clipping see it
    exactly as before), and a later strategy that rescales or replaces the loss scales or
    drops the penalty gradient with it.

    ``apply(vectors, scale, sink, *params)``: ``vectors`` a :class:`PenaltyVectors` laid out
    like ``params``, ``scale`` a Python float. If ``sink`` is not ``None``, backward stores
    the fp32 gradient it returns (grad_output included) as ``sink.penalty_grads`` (a
    :class:`FlatTensors`, valid until the next forward), so SI can subtract exactly what was
    added.
    """

    @staticmethod
    def forward(fctx, vectors, scale, sink, *params):  # noqa: D102
        device = params[0].device
        gradient = vectors.gradient_for(fctx, device)
        fctx.gradient, fctx.sink, fctx.hand_over_copy = gradient, sink, vectors.hand_over_copy
        if vectors.streamed:
            omega = None if vectors.importance is None else vectors.importance.views
            return streamed_penalty(params, vectors.theta_star.views, omega, scale, gradient.views)
        scratch = vectors.scratch_vector()
        scratch.copy_from(params)  # fp32, as param.float() was
        displacement = scratch.flat.sub_(vectors.theta_star.flat)
        if vectors.importance is None:
            value = torch.dot(displacement, displacement)
            torch.mul(displacement, 2.0 * scale, out=gradient.flat)
        else:
            torch.mul(displacement, vectors.importance.flat, out=gradient.flat)
            value = torch.dot(gradient.flat, displacement)
            if 2.0 * scale != 1.0:
                gradient.flat.mul_(2.0 * scale)
        return value * scale

    @staticmethod
    @once_differentiable
    def backward(fctx, grad_output):  # noqa: D102
        gradient = fctx.gradient
        # grad_output is 1 when the penalty is simply added to the loss. Reading it is free on
        # CPU; on an accelerator it would be a sync, and the multiply is one cheap kernel there.
        if grad_output.device.type != "cpu":
            gradient = FlatTensors(gradient.flat * grad_output, gradient.shapes)
        elif (factor := grad_output.item()) != 1.0:
            gradient = FlatTensors(gradient.flat * factor, gradient.shapes)
        if fctx.sink is not None:  # summed over the micro-batches of a step
            recorded = fctx.sink.penalty_grads
            fctx.sink.penalty_grads = gradient if recorded is None else FlatTensors(recorded.flat + gradient.flat, gradient.shapes)
        # The engine casts each gradient to its parameter's dtype (as the .float() cast did);
        # it neither writes into nor keeps these views (they stay referenced here), except
        # through a sharded parameter's local view (``hand_over_copy``).
        if fctx.hand_over_copy:
            gradient = FlatTensors(gradient.flat.clone(), gradient.shapes)
        return (None, None, None, *gradient.views)


def streamed_penalty(
    params: Sequence[torch.Tensor],
    theta_star: Sequence[torch.Tensor],
    importance: Sequence[torch.Tensor] | None,
    scale: float,
    gradient: Sequence[torch.Tensor],
) -> torch.Tensor:
    """:class:`QuadraticPenalty`'s forward with theta* and Omega in host memory, one tensor at a time.

    Each parameter's theta* (and Omega) is copied to the parameter's device, used, and
    dropped, so the device holds one tensor of them at a time besides ``gradient`` (views
    of one vector on the parameters' device, filled with ``2 scale Omega (theta - theta*)``).
    Returns ``scale * sum Omega (theta - theta*)^2``; the same values as the whole-vector
    path up to fp32 summation order.
    """
    device = params[0].device
    value = torch.zeros((), dtype=torch.float32, device=device)
    omegas = importance if importance is not None else [None] * len(params)
    with torch.no_grad():
        for param, anchor, omega, out in zip(params, theta_star, omegas, gradient):
            displacement = param.detach().float() - anchor.to(device, non_blocking=True)
            weighted = displacement if omega is None else displacement * omega.to(device, non_blocking=True)
            value += torch.dot(weighted.reshape(-1), displacement.reshape(-1))
            torch.mul(weighted, 2.0 * scale, out=out)
    return value * scale
