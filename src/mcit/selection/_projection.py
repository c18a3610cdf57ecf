"""Seeded random projections of per-sample weight gradients, never materialised.

A linear layer ``y = x W^T`` has the per-sample weight gradient ``G = sum_t g_t x_t^T``
(``g`` the gradient w.r.t. the output, ``x`` the input, ``t`` over tokens). A Gaussian
projection ``P_out (out x k_out)``, ``P_in (in x k_in)`` gives
``P_out^T G P_in = sum_t (P_out^T g_t)(P_in^T x_t)^T``, which is exactly
``(P_out ⊗ P_in)^T vec(G)`` (row-major ``vec``): a random linear projection of the flattened
gradient that costs two thin matmuls instead of a ``(params x dim)`` matrix. Every entry
``u_a^T G v_b`` of it satisfies ``E[(u^T G v)(u^T H v)] = <G, H>``, so scaling by
``1/sqrt(size)`` preserves inner products in expectation.

Zero-order (MeZO-style) features need the same random directions in every batch, so they
are regenerated from the seed instead of being stored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mcit.seeds import derive_seed

# Salts that keep the Kronecker factors and the zero-order directions independent streams.
_KRONECKER, _DIRECTION = 0, 1


def split_dim(dim: int, parts: int) -> list[int]:
    """Split ``dim`` coordinates as evenly as possible; the first parts take the remainder.

    Raises:
        ValueError: If there are fewer coordinates than parts.
    """
    if dim < parts:
        raise ValueError(f"dim={dim} is smaller than the {parts} modules it is split across; raise dim")
    base, extra = divmod(dim, parts)
    return [base + (index < extra) for index in range(parts)]


def factor_shape(in_features: int, out_features: int, size: int) -> tuple[int, int]:
    """``(k_in, k_out)`` with ``k_in * k_out >= size``, near-square but no wider than the thin side.

    A side wider than the weight's own (e.g. LoRA's rank-8 side) would only add redundant
    coordinates, so the thin side is capped at its width and the other side takes the rest.
    """
    side = math.ceil(math.sqrt(size))
    if in_features <= out_features:
        k_in = min(in_features, side)
        return k_in, math.ceil(size / k_in)
    k_out = min(out_features, side)
    return math.ceil(size / k_out), k_out


@dataclass
class KroneckerProjection:
    """The projection of one linear layer's weight gradient onto ``size`` coordinates.

    Attributes:
        p_in: ``(in_features, k_in)`` standard Gaussian factor applied to layer inputs.
        p_out: ``(out_features, k_out)`` standard Gaussian factor applied to output gradients.
        size: Coordinates kept: the first ``size`` of the row-major ``k_out x k_in`` block.
    """

    p_in: torch.Tensor
    p_out: torch.Tensor
    size: int

    @classmethod
    def create(
        cls, in_features: int, out_features: int, size: int, seed: int, device: torch.device | str = "cpu"
    ) -> KroneckerProjection:
        """Draw the factors on the CPU (same numbers on every device), then move them."""
        k_in, k_out = factor_shape(in_features, out_features, size)
        generator = torch.Generator().manual_seed(seed)
        p_in = torch.randn(in_features, k_in, generator=generator)
        p_out = torch.randn(out_features, k_out, generator=generator)
        return cls(p_in.to(device), p_out.to(device), size)

    def project(self, inputs: torch.Tensor, output_grads: torch.Tensor) -> torch.Tensor:
        """Projected per-sample weight gradients.

        Args:
            inputs: ``(batch, ..., in_features)`` layer inputs.
            output_grads: ``(batch, ..., out_features)`` loss gradients w.r.t. the layer outputs.

        Returns:
            ``(batch, size)`` float32 projections of each sample's ``sum_t g_t x_t^T``.
        """
        batch = inputs.shape[0]
        x = inputs.reshape(batch, -1, inputs.shape[-1]).float() @ self.p_in
        g = output_grads.reshape(batch, -1, output_grads.shape[-1]).float() @ self.p_out
        block = torch.bmm(g.transpose(1, 2), x).flatten(1)  # (batch, k_out * k_in), row-major
        return block[:, : self.size] / math.sqrt(self.size)

    def matrix(self) -> torch.Tensor:
        """The explicit ``(out * in, size)`` matrix (checks only: it is as large as it sounds)."""
        return torch.kron(self.p_out, self.p_in)[:, : self.size] / math.sqrt(self.size)


def kronecker_projections(
    shapes: Sequence[tuple[int, int]], dim: int, seed: int, device: torch.device | str = "cpu"
) -> list[KroneckerProjection]:
    """One projection per linear module, ``dim`` split evenly across them.

    An even split (rather than one proportional to module size) gives every module the same
    say in the concatenated vector, the way per-layer gradient features are usually pooled,
    and keeps small modules (LoRA's ``lora_A``) from vanishing.

    Args:
        shapes: ``(out_features, in_features)`` of each module's weight, in a fixed order.
        dim: Total projected dimension.
        seed: Projection seed; module ``i`` uses the stream ``(seed, i)``.
        device: Where the factors live.
    """
    sizes = split_dim(dim, len(shapes))
    return [
        KroneckerProjection.create(in_f, out_f, size, derive_seed(seed, _KRONECKER, index), device)
        for index, ((out_f, in_f), size) in enumerate(zip(shapes, sizes))
    ]


def gaussian_direction(parameters: Sequence[torch.Tensor], seed: int, index: int) -> list[torch.Tensor]:
    """Zero-order direction ``index``: one standard Gaussian tensor per parameter.

    Drawn on the parameters' device from a seeded generator, so the same ``(seed, index)``
    gives the same direction in every batch and every call on that device type.
    """
    device = parameters[0].device
    generator = torch.Generator(device=device).manual_seed(derive_seed(seed, _DIRECTION, index))
    return [
        torch.randn(p.shape, generator=generator, device=device, dtype=torch.float32).to(p.dtype) for p in parameters
    ]
