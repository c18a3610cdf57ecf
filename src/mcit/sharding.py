"""FSDP2: the model's parameters sharded over the processes (``torch.distributed.fsdp.fully_shard``).

With an accelerate config of ``distributed_type: FSDP`` and ``fsdp_version: 2``
(``configs/accelerate/fsdp*.yaml``) every process keeps 1/N of each parameter, gradient and
optimizer state. mcit applies FSDP2 itself, as it runs data parallel itself
(:mod:`mcit.distributed`): each decoder layer of the language model is one FSDP unit (its
weights gathered for its forward and backward, then freed), the rest of the model (vision
tower, projector, embeddings, head) is the root unit. The vision tower is not a unit of its
own because a process whose share of a step holds no image does not run it, and FSDP's
gathers are collectives every process must join.

How mcit's pieces meet the shards:

- **Gradients** are summed over the processes by FSDP's reduce-scatter (divide factor 1,
  sum-only collectives, which gloo also has), so the loop's token weights make them the
  whole batch's, as on one process. A parameter that ran on no process keeps no gradient
  (:class:`ParameterUse`), as on one process, though FSDP fills zeros for it.
- **The methods** work on each parameter's local shard (:func:`local`); a reduction over
  all parameters (a norm, a dot product, a penalty's value) is the sum of the shards'
  (``World.sum_over_shards_``).
- **Checkpoints** hold whole tensors: :func:`full` gathers a parameter (every process
  takes part; rank 0 writes), :func:`local_part` takes a process's rows of a whole tensor,
  and :class:`Layout` does both for the methods' state, which keeps per-parameter tensors
  by parameter name.
- **Evaluation and selection features** run on whole weights (:func:`unsharded`): each
  process gathers every unit once and then generates its share of the answers on its own,
  with no collective per forward (the processes' shares need not take the same number of
  decoding steps).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor, Shard

_KEPT = "_mcit_sharded_trainable"


def shard_model(model: nn.Module, units: Iterable[nn.Module]) -> None:
    """Shard ``model`` in place: each of ``units`` (decoder layers) one FSDP2 unit, the rest the root unit.

    The root unit of a peft model is the model it wraps: generation runs through that one's
    forward, and FSDP needs every forward to enter through the root.
    """
    get_base_model = getattr(model, "get_base_model", None)
    root = get_base_model() if callable(get_base_model) else model
    if hasattr(root, "enable_input_require_grads"):
        # Each unit's reduce-scatter is issued when its backward is done, which FSDP learns
        # from its inputs' gradient; with frozen embeddings (LoRA) and no image in a process's
        # share nothing upstream needs one, the first layer's reduce would come last there
        # and the processes' collectives would not pair up.
        root.enable_input_require_grads()
    for unit in units:
        fully_shard(unit)
    fully_shard(root)
    setattr(model, _KEPT, tuple(model.named_parameters()))
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)  # sum, as the loop's token weights expect
            module.set_force_sum_reduction_for_comms(True)  # gloo has no pre-multiplied sum
            module.set_reduce_scatter_unused_params(True)  # same collectives when a process skips the vision tower


def parameters_by_name(model: nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """Every parameter by name; of a sharded model, the sharded ones.

    FSDP keeps each sharded parameter as one object for the whole run, but while a unit's
    weights are gathered (the root unit's stay gathered from its forward to its backward)
    the model lists the whole ones in their place; the sharded ones are what the optimizer,
    the gradients and the methods' state belong to.
    """
    kept = getattr(model, _KEPT, None)
    return list(kept) if kept is not None else list(model.named_parameters())


def trainable_parameters(model: nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """The trainable parameters by name (:func:`parameters_by_name` that require a gradient).

    A method may switch a parameter of a sharded model on or off (a task's own module that
    was created frozen before sharding: :meth:`mcit.strategies.Strategy.before_sharding`):
    the switch goes to the sharded parameter, after :func:`reshard`, as each gather copies
    ``requires_grad`` from it to the whole one.
    """
    return [(n, p) for n, p in parameters_by_name(model) if p.requires_grad]


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This process's shard of a sharded tensor (a view: in-place changes reach it); others unchanged."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def local_grads(params: Iterable[torch.nn.Parameter]) -> list[torch.Tensor]:
    """Each parameter's gradient, this process's shard of it where sharded (zeros for a parameter without one)."""
    return [local(p.grad) if p.grad is not None else torch.zeros_like(local(p)) for p in params]


def full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a sharded one (a collective: every process must call it); others unchanged."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def host_copy(tensor: torch.Tensor, keep: bool = True) -> torch.Tensor | None:
    """A whole CPU copy of ``tensor`` for a checkpoint, or ``None`` where not ``keep`` (the processes that do not write).

    Where ``tensor`` is sharded it is gathered first (a collective: every process calls it),
    and the whole tensor is dropped from the device as soon as it is copied: gathering a
    checkpoint's tensors one by one through this, a device holds at most one whole tensor
    beyond its shards, and only the writing process holds the whole state, in host memory
    (tested in ``tests/unit/test_checkpoint_gather.py``).
    """
    whole = full(tensor.detach())
    return whole.to("cpu", copy=True) if keep else None


def whole_state(model: nn.Module, keep: bool = True, names: set[str] | None = None) -> dict[str, torch.Tensor] | None:
    """``model.state_dict()`` (its ``names`` only, if given) with every sharded tensor gathered
    whole, on the CPU (a collective: every process must call it); ``None`` where not ``keep``
    (the processes that do not write)."""
    whole = {name: host_copy(tensor, keep) for name, tensor in model.state_dict().items() if names is None or name in names}
    return whole if keep else None


def local_part(whole: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """This process's rows of ``whole``, laid out as the shard of ``like`` (a sharded parameter); ``whole`` if ``like`` is not sharded."""
    if not isinstance(like, DTensor):
        return whole
    (placement,) = like.placements
    assert isinstance(placement, Shard) and placement.dim == 0, "FSDP2 shards along the first dimension"
    mesh = like.device_mesh
    chunks = torch.chunk(whole, mesh.size(), dim=0)
    rank = mesh.get_local_rank()
    return chunks[rank] if rank < len(chunks) else whole.new_empty((0, *whole.shape[1:]))


def as_shard_of(part: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """This process's shard ``part`` as a sharded tensor laid out like ``like``; ``part`` itself if ``like`` is not sharded."""
    if not isinstance(like, DTensor):
        return part
    return DTensor.from_local(part.to(like.device), like.device_mesh, like.placements, shape=like.shape, stride=like.stride())


def counted_once(value: torch.Tensor, processes: int) -> torch.Tensor:
    """A term every process computes whole (the same value on each), as each process adds it to its loss.

    Its value is divided by ``processes``, so the processes' summed loss counts it once; its
    gradient is the whole one, as each process needs it: the whole tensors it was computed
    from are gathered with ``full``, whose backward keeps each process's rows of the gradient.
    """
    if processes == 1:
        return value
    return value / processes + (value - value.detach()) * ((processes - 1) / processes)


def shard_like(whole: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A whole tensor (e.g. from a checkpoint) sharded like ``like``, if ``like`` is a sharded tensor of its shape."""
    if not isinstance(like, DTensor) or whole.shape != like.shape:
        return whole
    return as_shard_of(local_part(whole, like), like)


@contextlib.contextmanager
def unsharded(model: nn.Module) -> Iterator[None]:
    """Every FSDP unit of ``model`` gathered and kept whole until the block ends, so forwards run
    without collectives (each process may run a different number); no-op for an unsharded model."""
    units = [m for m in model.modules() if isinstance(m, FSDPModule)]  # the root unit first
    if not units:
        yield
        return
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)
        unit.unshard()
    try:
        yield
    finally:
        for unit in units:
            unit.reshard()
            unit.set_reshard_after_forward(unit is not units[0], recurse=False)  # FSDP2's defaults


def reshard(model: nn.Module) -> None:
    """Free every FSDP unit's gathered weights (the root unit keeps its own gathered after a
    forward until its backward, or for good after a forward without one); no-op for an unsharded model."""
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


class ParameterUse:
    """Which trainable parameters took part in the forward passes since :meth:`reset`, on any process.

    FSDP gives a parameter that ran on no process a zero gradient (its collectives must
    match across processes); one process would give it none, and AdamW leaves a parameter
    without a gradient alone. A forward pre-hook on each module that owns trainable
    parameters records that it ran; :meth:`drop_unused_` then clears the gradient of every
    parameter whose module ran on no process.
    """

    def __init__(self, model: nn.Module) -> None:
        self.params: list[torch.nn.Parameter] = []
        self.used: list[bool] = []
        self.recording = True
        self._handles = []
        trainable = dict(trainable_parameters(model))
        for prefix, module in model.named_modules():
            names = (f"{prefix}.{name}" if prefix else name for name, _ in module.named_parameters(recurse=False))
            own = [trainable[name] for name in names if name in trainable]
            if own:
                indices = list(range(len(self.params), len(self.params) + len(own)))
                self.params.extend(own)
                self._handles.append(module.register_forward_pre_hook(self._hook(indices)))
        self.used = [False] * len(self.params)

    def _hook(self, indices: list[int]) -> Any:
        def mark(module: nn.Module, args: Any) -> None:
            if self.recording:
                for index in indices:
                    self.used[index] = True

        return mark

    def reset(self) -> None:
        self.used = [False] * len(self.params)

    def drop_unused_(self, world: Any) -> None:
        """Clear the gradients of the parameters no process used (``world``: :class:`mcit.distributed.World`)."""
        for param, count in zip(self.params, world.sum_counts([int(u) for u in self.used])):
            if count == 0:
                param.grad = None
        self.reset()

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


class Layout:
    """Gathers and scatters the methods' per-parameter state between shards and whole tensors.

    The methods keep per-parameter tensors in dicts keyed by parameter name (theta*, Omega,
    SI's path, DGG's anchor). In a state tree, every tensor under a key that names a sharded
    trainable parameter (or in a list under such a key) is such a tensor: :meth:`gather` makes it whole (for a checkpoint
    that loads on any number of processes), :meth:`scatter` takes this process's shard.
    """

    def __init__(self, model: nn.Module) -> None:
        self.params = {name: p for name, p in trainable_parameters(model) if isinstance(p, DTensor)}

    def gather(self, tree: Any, keep: bool = True) -> Any:
        """``tree`` with each sharded tensor whole, as a CPU copy gathered one at a time (:func:`host_copy`),
        or ``None`` in its place where not ``keep`` (the processes that do not write)."""
        return self._map(tree, lambda name, t: self._whole(name, t, keep))

    def scatter(self, tree: Any) -> Any:
        return self._map(tree, lambda name, t: local_part(t, self.params[name]) if t.shape == self.params[name].shape else t)

    def _whole(self, name: str, shard: torch.Tensor, keep: bool) -> torch.Tensor | None:
        # gloo gathers no 8- or 16-bit integers (TIR's int16 owners): through int32, exactly
        narrow = not shard.is_floating_point() and shard.element_size() < 4
        whole = host_copy(as_shard_of(shard.to(torch.int32) if narrow else shard, self.params[name]), keep)
        return whole.to(shard.dtype) if narrow and whole is not None else whole

    def _map(self, tree: Any, convert) -> Any:
        if isinstance(tree, dict):
            return {key: self._convert(key, value, convert) if key in self.params else self._map(value, convert) for key, value in tree.items()}
        if isinstance(tree, list | tuple):
            return type(tree)(self._map(value, convert) for value in tree)
        return tree

    def _convert(self, name: str, value: Any, convert) -> Any:
        """A tensor under a parameter's name, or each tensor of a list of them (C-LoRA's task start: ``[theta]``)."""
        if isinstance(value, torch.Tensor):
            return convert(name, value)
        if isinstance(value, list | tuple) and all(isinstance(t, torch.Tensor) for t in value):
            return type(value)(convert(name, t) for t in value)
        return self._map(value, convert)
