"""Shared pieces of the regularization family (l2, ewc, mas, si); not a method itself.

Every method of the family adds ``scale * sum_i Omega_i (theta_i - theta*_i)^2`` over the
trainable parameters. This module holds what they share: fp32 snapshots of the parameters,
that quadratic penalty, mean-1 normalisation of Omega, a running mean over tasks, and seeded
batches of a finished task's training samples for importance estimation.

The penalty runs at every training step, so it is written for speed: theta* and Omega are
kept in :class:`FlatTensors` (all tensors back to back in one fp32 vector, built once per
task, see :class:`Anchor`), and the penalty is one autograd node (:class:`QuadraticPenalty`)
whose gradient ``2 scale Omega (theta - theta*)`` is written out analytically: a handful of
whole-vector operations per step instead of about ten small autograd ops per tensor.
"""

from __future__ import annotations

import random
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from mcit.data.collate import Batch
from mcit.data.sample import Sample
from mcit.distributed import SINGLE, World
from mcit.losses import answer_tokens
from mcit.sharding import local, local_grads
from mcit.strategies.base import Context

Tensors = dict[str, torch.Tensor]


def snapshot(ctx: Context) -> Tensors:
    """Detached fp32 copies of the trainable parameters (this process's shards where sharded), by name, on their own device."""
    return {name: local(param).detach().float().clone() for name, param in ctx.trainable()}


def trainable_lists(ctx: Context) -> tuple[tuple[str, ...], list[torch.nn.Parameter]]:
    """Names and trainable parameters of ``ctx.model``, in the same (module) order."""
    named = ctx.trainable()
    return tuple(name for name, _ in named), [param for _, param in named]


def anchored(ctx: Context, theta_star: Tensors) -> tuple[tuple[str, ...], list[torch.nn.Parameter]]:
    """The trainable parameters that have a theta*, by name.

    A parameter that a method added since the last finished task (eproj's projector, olora's
    adapter of a new task) held nothing of the earlier tasks: it trains free of the penalty.
    """
    names, params = trainable_lists(ctx)
    kept = [(name, p) for name, p in zip(names, params) if name in theta_star]
    return tuple(name for name, _ in kept), [p for _, p in kept]


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

    def by_name(self, names: Sequence[str]) -> Tensors:
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


def normalise_mean_one(importance: Tensors, world: World = SINGLE) -> Tensors:
    """Divide Omega by its mean over all elements of all tensors, so that mean(Omega) = 1.

    This makes the penalty strength independent of the loss scale (token-mean losses give
    tiny Fisher values). An all-zero Omega is returned unchanged. With sharded parameters
    (``world.sharded``) the mean is over all processes' shards.
    """
    sums = torch.tensor(
        [float(sum(t.numel() for t in importance.values())), float(sum(t.double().sum() for t in importance.values()))],
        dtype=torch.float64,
    )
    world.sum_over_shards_([sums])
    count, total = sums.tolist()
    if count == 0 or float(total) == 0.0:
        return {name: t.clone() for name, t in importance.items()}
    mean = float(total) / count
    return {name: t / mean for name, t in importance.items()}


def running_mean(average: Tensors | None, new: Tensors, count: int) -> Tensors:
    """Mean of ``count`` earlier importances (``average``) and ``new``: equal weight per task.

    A parameter without an earlier importance (a module a method added for this task) had
    none for the earlier tasks, which it did not exist for: 0 in their mean.
    """
    if average is None or count == 0:
        return {name: t.clone() for name, t in new.items()}
    return {
        name: average[name] + (t - average[name]) / (count + 1) if name in average else t / (count + 1)
        for name, t in new.items()
    }


def to_device(tensors: Tensors | None, device: torch.device) -> Tensors | None:
    """Move a name->tensor map to ``device`` as fp32 (no copy when it is already there)."""
    if tensors is None:
        return None
    return {name: t.to(device=device, dtype=torch.float32) for name, t in tensors.items()}


def _chosen_batches(ctx: Context, batch_size: int, limit: int, purpose: str) -> list[list[Sample]]:
    """Up to ``limit`` training samples of the current task in batches, drawn uniformly without
    replacement, seeded by ``ctx.seed`` and ``purpose`` (a resumed run draws the same)."""
    samples = list(ctx.task.train)
    rng = random.Random(f"{purpose}/{ctx.seed}")
    chosen = rng.sample(samples, min(limit, len(samples)))
    return [chosen[start : start + batch_size] for start in range(0, len(chosen), batch_size)]


def importance_batches(ctx: Context, batch_size: int, limit: int, purpose: str) -> Iterator[Batch]:
    """Batches of up to ``limit`` training samples of the current task, on ``ctx.device`` (see :func:`_chosen_batches`)."""
    for samples in _chosen_batches(ctx, batch_size, limit, purpose):
        yield ctx.collator.train_batch(samples).to(ctx.device)


def importance_mean(
    ctx: Context, batch_size: int, limit: int, purpose: str, contribution: Callable[[Batch, float], Tensors]
) -> Tensors:
    """The mean of ``contribution(batch, weight)`` (fp32 tensors by trainable-parameter name) over the importance batches.

    ``contribution`` scales the loss it differentiates by ``weight``. On several processes
    (``ctx.world``) each computes its contiguous share of the batches (weight 1) and the sums
    are added over the processes, so every process gets the mean over all of them (up to
    float summation order) for its share of the work. With sharded parameters a gradient is
    a collective, so the processes go through every batch together, each with its part of
    it (:func:`batch_part`), and each gets the mean on its shards.
    """
    batches = _chosen_batches(ctx, batch_size, limit, purpose)
    assert batches, "a task has at least one training sample"
    world = ctx.world
    total: Tensors | None = None
    with torch.enable_grad():
        for samples in batches if world.sharded else world.share(batches):
            if world.sharded:
                batch, weight = batch_part(ctx, samples)
            else:
                batch, weight = ctx.collator.train_batch(samples).to(ctx.device), 1.0
            part = contribution(batch, weight)
            if total is None:
                total = part
            else:
                for name, tensor in part.items():
                    total[name].add_(tensor)
    if total is None:  # this process's share was empty
        total = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in ctx.trainable()}
    if not world.sharded:
        world.sum_tensors_(list(total.values()))
    return {name: tensor / len(batches) for name, tensor in total.items()}


def batch_part(ctx: Context, samples: list[Sample]) -> tuple[Batch, float]:
    """This process's part of a batch whose gradient all processes take together (on ``ctx.device``), and its loss's weight.

    Each process takes its contiguous share, weighted by its share of the batch's answer
    tokens, so the gradients summed over the processes are the whole batch's; a batch of
    fewer samples than processes is taken whole by each, with weight 1 / processes. One
    process takes the whole batch with weight 1.
    """
    world = ctx.world
    if not world.distributed:
        return ctx.collator.train_batch(samples).to(ctx.device), 1.0
    if len(samples) < world.size:
        return ctx.collator.train_batch(samples).to(ctx.device), 1.0 / world.size
    batch = ctx.collator.train_batch(world.share(samples))
    tokens = answer_tokens(batch.labels)
    (total,) = world.sum_counts([tokens])
    return batch.to(ctx.device), tokens / total if total else 1.0 / world.size


def parameter_grads(ctx: Context, value: torch.Tensor) -> Tensors:
    """fp32 gradients of ``value`` w.r.t. the trainable parameters (zeros where unused).

    Uses ``torch.autograd.grad`` so ``param.grad`` is left untouched. With sharded
    parameters the gradient is a collective of FSDP's backward: it goes through ``.grad``
    (empty outside a training step, and left empty) and is this process's shards, summed
    over the processes.
    """
    named = ctx.trainable()
    if ctx.world.sharded:
        value.backward()
        grads = {name: local_grads([p])[0].float().clone() for name, p in named}
        for _, p in named:
            p.grad = None
        return grads
    grads = torch.autograd.grad(value, [p for _, p in named], allow_unused=True)
    return {
        name: (torch.zeros_like(p, dtype=torch.float32) if g is None else g.detach().float())
        for (name, p), g in zip(named, grads)
    }


def tensors_state(tensors: Tensors | None) -> dict[str, Any] | None:
    """A name->tensor map as a state-tree node (CPU copies happen in the store)."""
    return None if tensors is None else dict(tensors)


def _resets_vectors(attribute: str) -> property:
    """A property over ``attribute`` whose setter also drops :class:`Anchor`'s kept vectors."""

    def get(self: Anchor) -> Tensors | None:
        return getattr(self, attribute)

    def set_(self: Anchor, value: Tensors | None) -> None:
        setattr(self, attribute, value)
        self._flat = None

    return property(get, set_)


class Anchor:
    """theta* and Omega of a finished-task sequence, and the penalty they define.

    theta* and Omega are kept by parameter name (the state format) and, for the per-step
    penalty, as :class:`FlatTensors` on ``ctx.vectors_device`` (the training device, or host
    memory with ``train.offload_method_state``) laid out like the trainable parameters, with the by-name dicts pointing at views of them (one copy in memory). The
    vectors are built at the first penalty after theta* or Omega is assigned (once per task)
    and again if the trainable parameters' names or the device change. Assign new dicts to
    ``theta_star`` / ``importance`` rather than replacing their entries, so the vectors follow.

    Attributes:
        theta_star: Trainable parameters (fp32) at the end of the last finished task.
        importance: Omega by parameter name (fp32), or ``None`` for Omega = 1.
        tasks: Finished tasks folded into ``importance`` so far.
        penalty_grads: The fp32 gradient the penalty's backward passes of the current
            optimizer step added to the parameters (laid out like them, summed over the
            step's micro-batches), if it was asked to record it; ``None`` if not, or if no
            backward has gone through it since the step's first penalty.
    """

    def __init__(self) -> None:
        self._theta_star: Tensors | None = None
        self._importance: Tensors | None = None
        self.tasks = 0
        self.penalty_grads: FlatTensors | None = None
        self._flat: tuple[tuple[str, ...], torch.device, PenaltyVectors] | None = None

    # Assigning either drops the kept vectors; the next penalty rebuilds them.
    theta_star = _resets_vectors("_theta_star")
    importance = _resets_vectors("_importance")

    def _vectors(self, ctx: Context, names: tuple[str, ...]) -> PenaltyVectors:
        """theta* and Omega laid out like ``names``, on ``ctx.vectors_device`` (kept per layout)."""
        device = ctx.vectors_device
        if self._flat is not None and self._flat[0] == names and self._flat[1] == device:
            return self._flat[2]
        assert self._theta_star is not None
        omega = None if self._importance is None else [self._importance[name] for name in names]
        vectors = PenaltyVectors.of([self._theta_star[name] for name in names], omega, device, ctx.streams_state)
        vectors.hand_over_copy = ctx.world.sharded
        self._theta_star = {**self._theta_star, **vectors.theta_star.by_name(names)}
        if vectors.importance is not None:
            self._importance = {**self._importance, **vectors.importance.by_name(names)}
        self._flat = (names, device, vectors)
        return vectors

    def penalty(self, ctx: Context, scale: float = 1.0, record_gradients: bool = False) -> torch.Tensor | None:
        """``scale * sum Omega (theta - theta*)^2``, or ``None`` before the first task has finished.

        With ``record_gradients`` (what SI needs), the backward pass through it sets
        ``penalty_grads``.
        """
        if self._theta_star is None:
            return None
        if ctx.micro_batch == 0:
            self.penalty_grads = None
        names, params = anchored(ctx, self._theta_star)
        if not params:
            return torch.zeros((), device=ctx.device, dtype=torch.float32)
        sink = self if record_gradients else None
        if ctx.world.sharded:  # this process's shards' part of the penalty, entering the step once
            params = [local(p) for p in params]
            scale = ctx.shard_term(scale)
        with torch.autocast(ctx.device.type, enabled=False):  # fp32, under bf16 autocast too
            return QuadraticPenalty.apply(self._vectors(ctx, names), float(scale), sink, *params)

    def penalised(
        self, ctx: Context, loss: torch.Tensor, scale: float, record_gradients: bool = False
    ) -> torch.Tensor:
        """``loss + scale * penalty``; ``loss`` unchanged before the first task has finished."""
        # The scale goes into the penalty node, which folds it into the gradient it prepares.
        penalty = self.penalty(ctx, scale, record_gradients)
        return loss if penalty is None else loss + penalty

    def average_in(self, importance: Tensors) -> None:
        """Fold one finished task's Omega into the running mean over tasks."""
        self.importance = running_mean(self._importance, importance, self.tasks)
        self.tasks += 1

    def state_dict(self) -> dict[str, Any]:
        return {
            "theta_star": tensors_state(self._theta_star),
            "importance": tensors_state(self._importance),
            "tasks": self.tasks,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.theta_star = state.get("theta_star")
        self.importance = state.get("importance")
        self.tasks = int(state.get("tasks", 0))
        self.penalty_grads = None

