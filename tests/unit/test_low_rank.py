"""Low-rank matrices for C-LoRA: compression keeps the matrix, the Hadamard norm matches the dense one."""

from __future__ import annotations

import pytest
import torch

from mcit.strategies._low_rank import LowRank, compress, hadamard_square_sum


def random(rows: int, cols: int, seed: int) -> torch.Tensor:
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))


def test_hadamard_square_sum_equals_the_dense_computation_with_its_gradients():
    past = LowRank(random(48, 5, 0), random(5, 40, 1))
    x, y = random(48, 6, 2).requires_grad_(), random(6, 40, 3).requires_grad_()
    got = hadamard_square_sum(past, x, y)
    want = (past.dense() * (x @ y)).square().sum()
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    for g, w in zip(torch.autograd.grad(got, (x, y)), torch.autograd.grad(want, (x, y))):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4 * w.abs().max().item())


def test_compress_keeps_the_matrix_and_finds_its_rank():
    u, v = random(30, 4, 0), random(4, 20, 1)
    repeated = compress(torch.cat([u, u, 2 * u], dim=1), torch.cat([v, -v, v], dim=0))  # = 2 u v, rank 4
    assert repeated.rank == 4
    torch.testing.assert_close(repeated.dense(), 2 * u @ v, rtol=1e-5, atol=1e-5)
    cancelled = compress(torch.cat([u, u], dim=1), torch.cat([v, -v], dim=0))  # = 0
    assert cancelled.rank == 0 and cancelled.dense().abs().max() == 0


def test_plus_adds_and_square_sum_is_the_frobenius_norm():
    a = compress(random(16, 3, 0), random(3, 12, 1))
    u, v = random(16, 2, 2), random(2, 12, 3)
    total = a.plus(u, v)
    torch.testing.assert_close(total.dense(), a.dense() + u @ v, rtol=1e-5, atol=1e-5)
    assert total.rank == 5
    assert total.square_sum().item() == pytest.approx(total.dense().square().sum().item(), rel=1e-5)
