"""The accuracy matrix as the metrics read it, and the cells each metric needs.

``matrix[k][i]`` is the score on task ``i`` after training task ``k``. A cell that was not
evaluated is ``None`` (``nan`` in a numpy array, which cannot hold ``None``): the toolkits
of the field (MCITlib, CoIN, HiDe-LLaVA) evaluate only the tasks seen so far and report the
lower triangle. A metric that needs a missing cell raises :class:`MetricUnavailable` naming
it, rather than averaging over what is there, which would be a number of another definition.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Matrix = Sequence[Sequence[float | None]]


class MetricUnavailable(Exception):
    """A metric cannot be computed from this matrix: cells it needs were not evaluated, an
    input it needs was not given, or the stream is too short. ``str(error)`` is the reason."""


def as_matrix(matrix: Matrix) -> np.ndarray:
    """Return a ``(T, T)`` float array, ``nan`` where a cell was not evaluated.

    Raises:
        ValueError: If the matrix is empty, ragged, not square, or has an infinite or
            non-numeric cell.
    """
    rows = [list(r) for r in matrix]
    if not rows:
        raise ValueError("accuracy matrix is empty")
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise ValueError("accuracy matrix is ragged (rows of different lengths)")
    if width != len(rows):
        raise ValueError(f"accuracy matrix must be square, got {len(rows)}x{width}")
    a = np.asarray([[np.nan if v is None else v for v in r] for r in rows], dtype=np.float64)
    if np.any(np.isinf(a)):
        raise ValueError("accuracy matrix contains infinite values")
    return a


def as_vector(values: Sequence[float | None], size: int, what: str) -> np.ndarray:
    """Return ``values`` as ``size`` floats, ``nan`` for ``None``.

    Raises:
        ValueError: If there are not ``size`` values, or one is infinite.
    """
    v = np.asarray([np.nan if x is None else x for x in values], dtype=np.float64)
    if v.shape != (size,):
        raise ValueError(f"{what} must have {size} entries, got {v.size}")
    if np.any(np.isinf(v)):
        raise ValueError(f"{what} contains infinite values")
    return v


def require_tasks(a: np.ndarray, at_least: int) -> None:
    """Raise :class:`MetricUnavailable` when the stream has fewer than ``at_least`` tasks."""
    if a.shape[0] < at_least:
        raise MetricUnavailable(f"needs at least {at_least} tasks, the matrix has {a.shape[0]}")


def require_cells(a: np.ndarray, needed: np.ndarray, what: str) -> None:
    """Raise :class:`MetricUnavailable` naming the first missing cell among ``needed``.

    Args:
        a: The matrix from :func:`as_matrix`.
        needed: Boolean mask of the cells the metric reads.
        what: Those cells in words, for the reason ("the diagonal").
    """
    missing = needed & np.isnan(a)
    if missing.any():
        k, i = (int(x) for x in np.argwhere(missing)[0])
        raise MetricUnavailable(
            f"needs {what}; {int(missing.sum())} of those cells were not evaluated "
            f"(first: after task {k + 1}, on task {i + 1})"
        )


def lower_triangle(t: int) -> np.ndarray:
    """Mask of the cells ``k >= i``: each task from its own training on."""
    return np.tril(np.ones((t, t), dtype=bool))


def last_row(t: int) -> np.ndarray:
    """Mask of the final row."""
    mask = np.zeros((t, t), dtype=bool)
    mask[-1] = True
    return mask


def diagonal(t: int) -> np.ndarray:
    """Mask of the cells ``k == i``: each task just after its training."""
    return np.eye(t, dtype=bool)


def above_diagonal(t: int) -> np.ndarray:
    """Mask of the cells ``k == i - 1``: each task after the task before it, not yet trained."""
    return np.eye(t, k=1, dtype=bool)
