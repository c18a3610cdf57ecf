"""Data parallelism over the processes that ``accelerate launch`` (or ``torchrun``) starts.

Each process holds the whole model and trains on its share of every optimizer step's batch;
after the step's backward passes the gradients are summed over the processes (one
all-reduce of one flat fp32 buffer), so every process then holds the gradient of the whole
batch and takes the same optimizer step. The loss of each process's micro-batches is
weighted by its share of the step's answer tokens over all processes (:meth:`World.sum_counts`),
so the summed gradient is the gradient of the whole batch's token-mean loss: the step of a
single process on that batch, up to float summation order.

Why not torch's ``DistributedDataParallel`` wrapper: the strategies' hooks work on the
model's own parameter names and on whole gradients after the backward pass (A-GEM's
projection, DGG's norms, SI's path integral), and a wrapper renames every parameter
(``module.``) and reduces inside the backward pass, which a strategy's own extra backward
(A-GEM's reference gradient) would also trigger. One explicit reduction after the
backward passes keeps every hook as it is on one process. What it gives up is DDP's
overlap of the reduction with the backward pass; for LoRA the gradients are small
(docs/scale.md).

:class:`World` is what the rest of mcit sees: the rank, the number of processes and the
collectives, each a no-op for a single process. With an FSDP2 accelerate config the world
is ``sharded``: the processes split the parameters too (:mod:`mcit.sharding`), FSDP sums the
gradients in its backward pass, and the methods sum their reductions over the shards
(:meth:`World.sum_over_shards_`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import torch

from mcit.errors import UserError

T = TypeVar("T")
_UNSUPPORTED = {
    "ACCELERATE_USE_DEEPSPEED": "DeepSpeed",
    "ACCELERATE_USE_MEGATRON_LM": "Megatron-LM",
}


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 when not launched as several).

    Attributes:
        rank: This process's index (0 writes the run directory).
        size: Number of processes.
        local_rank: Index on this machine (the CUDA device it uses).
        group: Process group for host-side collectives (``None``: the default group).
        sharded: The trainable parameters are sharded over the processes (FSDP2,
            :mod:`mcit.sharding`) instead of held whole by each.
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    group: Any = field(default=None, compare=False)
    sharded: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def span(self, n: int) -> range:
        """This rank's contiguous part of ``range(n)`` (parts differ in length by at most one; in rank order they are ``range(n)``)."""
        per, extra = divmod(n, self.size)
        start = self.rank * per + min(self.rank, extra)
        return range(start, start + per + (1 if self.rank < extra else 0))

    def share(self, items: Sequence[T]) -> list[T]:
        """This rank's contiguous part of ``items`` (see :meth:`span`)."""
        part = self.span(len(items))
        return list(items[part.start : part.stop])

    def sum_counts(self, counts: Sequence[int]) -> list[int]:
        """Each count summed over the processes (on the host: no device synchronisation)."""
        if not self.distributed:
            return list(counts)
        import torch.distributed as dist

        values = torch.tensor(list(counts), dtype=torch.int64)
        dist.all_reduce(values, group=self.group)
        return values.tolist()

    def sum_tensors_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Sum ``tensors`` over the processes, in place, in one all-reduce per device (fp32, or
        fp64 where one of them is; host tensors through the host-side group)."""
        if not self.distributed or not tensors:
            return
        import torch.distributed as dist

        with torch.no_grad():
            by_device: dict[torch.device, list[torch.Tensor]] = {}
            for tensor in tensors:
                by_device.setdefault(tensor.device, []).append(tensor)
            for device, same_device in by_device.items():
                dtype = torch.float64 if any(t.dtype == torch.float64 for t in same_device) else torch.float32
                flat = torch.cat([t.reshape(-1).to(dtype) for t in same_device])
                dist.all_reduce(flat, group=self.group if device.type == "cpu" else None)
                torch._foreach_copy_(same_device, [c.view_as(t) for c, t in zip(flat.split([t.numel() for t in same_device]), same_device)])

    def sum_over_shards_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Sum, in place, reductions that each process computed over its shard of the parameters
        (``sharded``); a no-op where every process holds the parameters whole."""
        if self.sharded:
            self.sum_tensors_(tensors)

    def gather(self, part: list[T]) -> list[T]:
        """Every rank's ``part`` concatenated in rank order, on every rank (picklable objects)."""
        if not self.distributed:
            return list(part)
        import torch.distributed as dist

        parts: list[Any] = [None] * self.size
        dist.all_gather_object(parts, part, group=self.group)
        return [item for one in parts for item in one]

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.distributed:
            import torch.distributed as dist

            dist.barrier(group=self.group)

    def device(self, name: str) -> torch.device:
        """The device this process trains on for ``device: name``: ``cuda``/``auto`` on several processes take ``cuda:<local_rank>``."""
        from mcit.device import resolve_device

        device = resolve_device(name)
        if self.distributed and device.type == "cuda" and device.index is None:
            device = torch.device("cuda", self.local_rank)
        return device


SINGLE = World()


def torch_threads(setting: int | str) -> int:
    """The CPU threads a process gives torch for the ``threads`` setting (a number, or ``"auto"``).

    ``"auto"``: half the CPUs this process may use (its affinity mask), divided among the
    processes launched on this machine (``LOCAL_WORLD_SIZE``), at least 1. Half, because
    OpenMP's idle threads spin: two runs that each take every CPU slow each other down by
    more than the 2x of sharing (2.25-2.9x for two short default runs on 2 CPUs, against
    1.0x with one thread each, which runs a tiny model as fast as two; docs/RESULTS.md).
    """
    if setting != "auto":
        return int(setting)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cpus // (2 * max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))))


def world_from_environment(timeout_minutes: float = 30.0) -> World:
    """The :class:`World` that the launcher's environment (``WORLD_SIZE``, ``RANK``, ...) describes.

    Initialises ``torch.distributed`` on first use: NCCL when CUDA is available (with a gloo
    group for host-side collectives), gloo otherwise.

    An accelerate config with ``distributed_type: FSDP`` and ``fsdp_version: 2`` gives a
    ``sharded`` world (:mod:`mcit.sharding` shards the model); mcit applies FSDP2 itself, so
    of the config's FSDP settings it reads only the version and refuses those it does not
    honour.

    Raises:
        UserError: If the accelerate config asks for a sharding engine or an FSDP setting mcit
            does not drive yet.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    for variable, engine in _UNSUPPORTED.items():
        if _on(variable):
            raise UserError(
                f"this accelerate config uses {engine}; mcit runs several processes as data-parallel "
                "replicas (configs/accelerate/ddp*.yaml) or with FSDP2 (configs/accelerate/fsdp*.yaml) so far; "
                "see docs/scale.md"
            )
    sharded = _fsdp_requested()
    precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if precision != "no":
        raise UserError(
            f"the accelerate config sets mixed_precision: {precision}; set it to 'no' and choose the precision "
            "in the mcit config (train.mixed_precision, model.dtype)"
        )
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(minutes=timeout_minutes))
    group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
    return World(dist.get_rank(), dist.get_world_size(), local_rank, group, sharded)


def _on(variable: str) -> bool:
    return os.environ.get(variable, "").lower() in ("1", "true", "yes")


# accelerate's FSDP settings (as ``accelerate launch`` exports them) that mcit cannot honour,
# each with what to use instead.
_FSDP_REFUSED = {
    "FSDP_OFFLOAD_PARAMS": "fsdp_offload_params: mcit's train.offload_method_state keeps the methods' state in host memory",
    "FSDP_ACTIVATION_CHECKPOINTING": "fsdp_activation_checkpointing: use mcit's train.gradient_checkpointing",
}


def _fsdp_requested() -> bool:
    """Whether the launcher asks for FSDP; raises for FSDP1 and for settings mcit does not honour."""
    if not _on("ACCELERATE_USE_FSDP"):
        return False
    version = os.environ.get("FSDP_VERSION", "1")
    if version != "2":
        raise UserError(
            f"this accelerate config uses FSDP version {version}; mcit shards with FSDP2 only: set fsdp_version: 2 "
            "(configs/accelerate/fsdp.yaml)"
        )
    for variable, hint in _FSDP_REFUSED.items():
        if _on(variable):
            raise UserError(f"this accelerate config sets {hint}")
    return True
