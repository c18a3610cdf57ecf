"""Low-rank matrices ``U V`` and the one product C-LoRA needs of them: ``||P (.) D||_F^2`` without forming P or D.

A sum of LoRA updates ``sum_t s B_t A_t`` has rank at most the sum of their ranks, and far
fewer entries than the weight it updates (rank 8 on a 4096 x 11008 weight: 0.26% of it).
C-LoRA's penalty is the squared Frobenius norm of an elementwise product of two such
matrices. With ``P = U V`` (rank k) and ``D = X Y`` (rank m), ``P (.) D = L R`` where
``L[i, (a, b)] = U[i, a] X[i, b]`` and ``R[(a, b), j] = V[a, j] Y[b, j]`` (Khatri-Rao
products), so ``||P (.) D||^2 = sum((L^T L) (.) (R R^T))``: two (k m) x (k m) Gram matrices,
memory ``(out + in) k m`` instead of ``out x in``, and autograd keeps only those factors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

RELATIVE_TOLERANCE = 1e-7  # on compression, singular values below this fraction of ||u|| ||v|| are dropped


@dataclass
class LowRank:
    """The matrix ``u @ v`` (u: out x k, v: k x in), fp32."""

    u: torch.Tensor
    v: torch.Tensor

    @property
    def rank(self) -> int:
        return self.u.shape[1]

    @property
    def numel(self) -> int:
        """Entries of the matrix it stands for."""
        return self.u.shape[0] * self.v.shape[1]

    def dense(self) -> torch.Tensor:
        return self.u @ self.v

    def to(self, device: torch.device | str) -> LowRank:
        return LowRank(self.u.to(device), self.v.to(device))

    def plus(self, u: torch.Tensor, v: torch.Tensor) -> LowRank:
        """``self + u @ v``, recompressed to its numerical rank."""
        return compress(torch.cat([self.u, u.to(self.u.device)], dim=1), torch.cat([self.v, v.to(self.v.device)], dim=0))

    def square_sum(self) -> torch.Tensor:
        """``||u v||_F^2 = sum((u^T u) (.) (v v^T))``, without forming ``u v``."""
        return ((self.u.T @ self.u) * (self.v @ self.v.T)).sum()


def compress(u: torch.Tensor, v: torch.Tensor) -> LowRank:
    """The same matrix ``u @ v`` with the fewest columns: QR of both factors, SVD of the small core.

    Computed in float64 and returned as fp32; directions whose singular value is below
    :data:`RELATIVE_TOLERANCE` x ``||u||_F ||v||_F`` are dropped: fp32 factors carry rounding
    errors of that relative size, so such directions are noise (e.g. what is left where an
    adapter's start and end factors cancel). A matrix that is 0 gets rank 0.
    """
    dtype = u.dtype
    u, v = u.double(), v.double()
    qu, ru = torch.linalg.qr(u)
    qv, rv = torch.linalg.qr(v.T)
    w, s, zt = torch.linalg.svd(ru @ rv.T)
    # Relative to the size of the terms summed (not to the largest singular value, which is
    # itself noise when the terms cancel out).
    threshold = RELATIVE_TOLERANCE * float(torch.linalg.norm(u) * torch.linalg.norm(v))
    keep = int((s > threshold).sum()) if threshold > 0 else 0
    return LowRank(((qu @ w[:, :keep]) * s[:keep]).to(dtype), (zt[:keep] @ qv.T).to(dtype))


def hadamard_square_sum(past: LowRank, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``||(past.u past.v) (.) (x y)||_F^2``, differentiable in x and y, without forming either matrix."""
    u, v = past.u, past.v
    if u.shape[1] == 0 or x.shape[1] == 0:
        return (x.sum() + y.sum()) * 0.0
    left = (u[:, :, None] * x[:, None, :]).reshape(u.shape[0], -1)
    right = (v[:, None, :] * y[None, :, :]).reshape(-1, v.shape[1])
    return ((left.T @ left) * (right @ right.T)).sum()
