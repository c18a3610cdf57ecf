"""Numeric precision of a training step: bf16 autocast, and fp32 master weights for low-precision models.

Two ways to train in bf16, chosen in the config (``train.mixed_precision``, ``model.dtype``):

* **autocast**: the weights (and the optimizer state) stay fp32; the forward pass and the
  loss run under ``torch.autocast(dtype=bfloat16)``, which casts matmul inputs to bf16.
  Memory for weights is unchanged; activations are smaller, matmuls use bf16 units.
* **bf16 weights with fp32 master weights**: ``model.dtype: bfloat16`` halves the weights'
  memory; the optimizer then updates an fp32 copy of each *trainable* low-precision tensor
  (its AdamW moments fp32 too) and writes it back rounded after every step
  (:class:`MasterWeights`). Without the copy, AdamW's small updates vanish in bf16's 8-bit
  mantissa. For LoRA the copy is the adapter's size only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from mcit.sharding import host_copy, local, local_part

LOW_PRECISION = (torch.bfloat16, torch.float16)


def autocast(mixed_precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context a forward pass and its loss run in: bf16 autocast, or nothing."""
    if mixed_precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class MasterWeights:
    """fp32 copies of low-precision trainable parameters, for the optimizer to update.

    ``optimizer_params`` are what the optimizer is built on: the fp32 copy for each
    bf16/fp16 parameter, the parameter itself otherwise. After the backward pass (and the
    strategies' gradient edits, which act on the model's parameters), :meth:`gradients_to_masters`
    hands each copy its parameter's gradient in fp32; after ``optimizer.step()``,
    :meth:`masters_to_model` rounds the copies back into the model.

    Args:
        params: The trainable parameters, in the optimizer's order.
        enabled: ``False`` keeps every parameter as it is (no copies).
    """

    def __init__(self, params: list[torch.nn.Parameter], enabled: bool = True) -> None:
        self.pairs: list[tuple[torch.nn.Parameter, torch.nn.Parameter]] = []
        self.optimizer_params: list[torch.nn.Parameter] = []
        for param in params:
            if enabled and param.dtype in LOW_PRECISION:
                master = torch.nn.Parameter(param.detach().float().clone())
                self.pairs.append((param, master))
                self.optimizer_params.append(master)
            else:
                self.optimizer_params.append(param)

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def gradients_to_masters(self) -> None:
        for param, master in self.pairs:
            master.grad = None if param.grad is None else param.grad.float()

    def masters_to_model(self) -> None:
        with torch.no_grad():
            for param, master in self.pairs:
                param.copy_(master)
                param.grad = None

    def state(self, keep: bool = True) -> list[torch.Tensor | None]:
        """The fp32 copies, for a mid-task checkpoint (the model's rounded weights cannot restore them):
        CPU copies, whole where sharded (:func:`mcit.sharding.host_copy`); ``None`` where not ``keep``."""
        return [host_copy(master, keep) for _, master in self.pairs]

    def load_state(self, tensors: list[torch.Tensor]) -> None:
        if len(tensors) != len(self.pairs):
            raise ValueError(f"the checkpoint has {len(tensors)} master weights, the model {len(self.pairs)}")
        with torch.no_grad():
            for (_, master), saved in zip(self.pairs, tensors):
                local(master).copy_(local_part(saved, master))

    def __iter__(self) -> Iterator[torch.nn.Parameter]:
        return iter(self.optimizer_params)
