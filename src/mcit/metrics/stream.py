"""The stream metrics: registered pure functions of the accuracy matrix, each with its convention.

``matrix[k][i]`` is the score on task ``i`` after training task ``k`` (``k, i = 0 .. T-1``;
the conventions below count from 1, as the papers do); ``zero_shot[i]`` is the score before
any task. A cell that was not evaluated is ``None`` (see :mod:`mcit.metrics.matrix`): every
metric reads only the cells its definition names, so a lower-triangle matrix gives all but
FWT. A metric that cannot be computed raises :class:`MetricUnavailable` with the reason, and
:func:`summarize` reports it as unavailable, never as a number of another definition.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mcit.metrics.matrix import (
    Matrix,
    MetricUnavailable,
    above_diagonal,
    as_matrix,
    as_vector,
    diagonal,
    last_row,
    lower_triangle,
    require_cells,
    require_tasks,
)
from mcit.registry import Registry

METRICS: Registry = Registry("metric")
"""Stream metrics: functions of ``matrix`` and, by parameter name, ``zero_shot`` / ``test_sizes``."""
STREAM_INPUTS = ("matrix", "zero_shot", "test_sizes")
CONVENTIONS: dict[str, str] = {}
"""Metric name -> its definition as the papers write it (1-indexed ``a[k][i]``, ``b[i]`` zero-shot)."""
# Why a metric whose input was not given is unavailable (a CSV has neither).
MISSING_INPUT = {
    "zero_shot": "needs the zero-shot scores (each task before any training)",
    "test_sizes": "needs each task's test-set size",
}


def stream_metric(name: str, help: str, convention: str) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Register a stream metric in :data:`METRICS` with its one-line help and its convention."""

    def register(function: Callable[..., float]) -> Callable[..., float]:
        CONVENTIONS[name] = convention
        return METRICS.register(name, help=help)(function)

    return register


@stream_metric(
    "final_average_accuracy", help="MFN (Last): mean final score over all tasks",
    convention="MFN (Last): mean_i a[T][i], the final row",
)
def final_average_accuracy(matrix: Matrix) -> float:
    """Final average accuracy (MFN): ``mean_i a[T-1][i]``.

    Args:
        matrix: Square accuracy matrix, ``matrix[k][i]`` (``None`` where not evaluated).

    Returns:
        Mean of the last row.

    Raises:
        MetricUnavailable: If a cell of the last row was not evaluated.
    """
    a = as_matrix(matrix)
    require_cells(a, last_row(len(a)), "the final row")
    return float(a[-1].mean())


@stream_metric(
    "mean_finetune_accuracy", help="MFT: mean score on each task just after it",
    convention="MFT: mean_i a[i][i], the diagonal",
)
def mean_finetune_accuracy(matrix: Matrix) -> float:
    """Mean fine-tune accuracy (MFT): ``mean_i a[i][i]``.

    Args:
        matrix: Square accuracy matrix, ``matrix[k][i]`` (``None`` where not evaluated).

    Returns:
        Mean of the diagonal.

    Raises:
        MetricUnavailable: If a diagonal cell was not evaluated.
    """
    a = as_matrix(matrix)
    require_cells(a, diagonal(len(a)), "the diagonal")
    return float(np.diag(a).mean())


@stream_metric(
    "mean_average_accuracy", help="MAA: mean over steps of the score on seen tasks",
    convention="MAA: mean_k ( mean_{i<=k} a[k][i] ), row-wise over the tasks seen so far",
)
def mean_average_accuracy(matrix: Matrix) -> float:
    """Mean average accuracy (MAA): ``mean_k ( mean_{i<=k} a[k][i] )``.

    Args:
        matrix: Square accuracy matrix, ``matrix[k][i]`` (``None`` where not evaluated).

    Returns:
        Mean over steps ``k`` of the average score on the tasks seen so far.

    Raises:
        MetricUnavailable: If a cell of the lower triangle was not evaluated.
    """
    a = as_matrix(matrix)
    require_cells(a, lower_triangle(len(a)), "the lower triangle (the tasks seen so far)")
    return float(np.mean([a[k, : k + 1].mean() for k in range(a.shape[0])]))


@stream_metric(
    "column_average_accuracy", help="Avg (column-wise, UCIT papers): each task's mean score from its training on",
    convention="Avg, column-wise (UCIT papers): mean_i ( mean_{k>=i} a[k][i] ), each task from its own training on",
)
def column_average_accuracy(matrix: Matrix) -> float:
    """Column-wise average accuracy ("Avg" of some UCIT papers): ``mean_i ( mean_{k>=i} a[k][i] )``.

    Each task's scores from its own training to the end of the stream are averaged, then the
    tasks: unlike MAA (row-wise), every task weighs the same however late it comes.

    Args:
        matrix: Square accuracy matrix, ``matrix[k][i]`` (``None`` where not evaluated).

    Returns:
        Mean over tasks of each task's mean over the rows from its own training on.

    Raises:
        MetricUnavailable: If a cell of the lower triangle was not evaluated.
    """
    a = as_matrix(matrix)
    require_cells(a, lower_triangle(len(a)), "the lower triangle (each task from its own training on)")
    return float(np.mean([a[i:, i].mean() for i in range(a.shape[0])]))


@stream_metric(
    "final_weighted_accuracy", help="FAA: final scores weighted by test-set size",
    convention="FAA (DGG): sum_i n_i a[T][i] / sum_i n_i, n_i the test-set sizes",
)
def final_weighted_accuracy(matrix: Matrix, test_sizes: Sequence[float]) -> float:
    """Final accuracy weighted by test-set size (FAA of the DGG paper).

    Args:
        matrix: Square accuracy matrix, ``matrix[k][i]`` (``None`` where not evaluated).
        test_sizes: Number of test examples of each task (``T`` non-negative values).

    Returns:
        ``sum_i n_i a[T-1][i] / sum_i n_i``.

    Raises:
        ValueError: If ``test_sizes`` has the wrong length, a missing or negative entry, or sums to 0.
        MetricUnavailable: If a cell of the last row was not evaluated.
    """
    a = as_matrix(matrix)
    n = as_vector(test_sizes, a.shape[0], "test_sizes")
    if np.any(np.isnan(n)) or np.any(n < 0) or n.sum() <= 0:
        raise ValueError("test_sizes must be non-negative with a positive sum")
    require_cells(a, last_row(len(a)), "the final row")
    return float(np.dot(n, a[-1]) / n.sum())


def _forgetting(matrix: Matrix, final_row_included: bool) -> float:
    """``mean_{i<=T-2} ( max_{i<=l<=stop} a[l][i] - a[T-1][i] )``, ``stop`` T-2 or T-1."""
    a = as_matrix(matrix)
    t = a.shape[0]
    require_tasks(a, 2)
    needed = lower_triangle(t)
    needed[:, -1] = False  # the last task has no forgetting yet
    require_cells(a, needed, "each earlier task's scores from its own training on (the lower triangle)")
    stop = t if final_row_included else t - 1
    return float(np.mean([a[i:stop, i].max() - a[-1, i] for i in range(t - 1)]))


@stream_metric(
    "average_forgetting", help="mean drop from a task's best score since its training (before the last step) to its final one",
    convention="forgetting from the task's own training on: mean_{i<T} ( max_{i<=l<T} a[l][i] - a[T][i] )",
)
def average_forgetting(matrix: Matrix) -> float:
    """Average forgetting: ``mean_{i<=T-2} ( max_{i<=l<=T-2} a[l][i] - a[T-1][i] )``.

    The max runs over the rows from the task's own training (``l = i``) to the one before
    the last: the rows before it hold its zero-shot-like scores, not what it learned. The
    result is at least ``-backward_transfer`` (``l = i`` is in range), and negative when the
    final scores beat every earlier one; :func:`average_forgetting_coinpp` includes the final
    row and is never negative.

    Args:
        matrix: Square accuracy matrix, ``matrix[k][i]`` (``None`` where not evaluated).

    Returns:
        The average forgetting.

    Raises:
        MetricUnavailable: With one task, or if a cell it reads was not evaluated.
    """
    return _forgetting(matrix, final_row_included=False)


@stream_metric(
    "average_forgetting_coinpp", help="CoIN++ forgetting: as average_forgetting, the final row in the max (never negative)",
    convention="CoIN++: mean_{i<T} ( max_{i<=l<=T} a[l][i] - a[T][i] ), final row included, never negative",
)
def average_forgetting_coinpp(matrix: Matrix) -> float:
    """CoIN++'s average forgetting: ``mean_{i<=T-2} ( max_{i<=l<=T-1} a[l][i] - a[T-1][i] )``.

    The max includes the final row, so a task that ends at its best counts 0 rather than a
    negative amount: the result is never negative and never below :func:`average_forgetting`.

    Args:
        matrix: Square accuracy matrix, ``matrix[k][i]`` (``None`` where not evaluated).

    Returns:
        The average forgetting under CoIN++'s convention.

    Raises:
        MetricUnavailable: With one task, or if a cell it reads was not evaluated.
    """
    return _forgetting(matrix, final_row_included=True)


@stream_metric(
    "backward_transfer", help="BWT: mean final minus just-trained score",
    convention="BWT: mean_{i<T} ( a[T][i] - a[i][i] )",
)
def backward_transfer(matrix: Matrix) -> float:
    """Backward transfer (BWT): ``mean_{i<=T-2} ( a[T-1][i] - a[i][i] )``.

    Args:
        matrix: Square accuracy matrix, ``matrix[k][i]`` (``None`` where not evaluated).

    Returns:
        The backward transfer (negative means forgetting).

    Raises:
        MetricUnavailable: With one task, or if a diagonal or final-row cell was not evaluated.
    """
    a = as_matrix(matrix)
    t = a.shape[0]
    require_tasks(a, 2)
    require_cells(a, diagonal(t) | last_row(t), "the diagonal and the final row")
    return float((a[-1, : t - 1] - np.diag(a)[: t - 1]).mean())


@stream_metric(
    "forward_transfer", help="FWT: mean gain on next task over zero-shot",
    convention="FWT: mean_{i>=2} ( a[i-1][i] - b[i] ), b the zero-shot scores",
)
def forward_transfer(matrix: Matrix, zero_shot: Sequence[float | None]) -> float:
    """Forward transfer (FWT): ``mean_{1<=i<=T-1} ( a[i-1][i] - zero_shot[i] )``.

    Args:
        matrix: Square accuracy matrix, ``matrix[k][i]`` (``None`` where not evaluated).
        zero_shot: Score on each task before any training (``T`` values).

    Returns:
        The forward transfer.

    Raises:
        ValueError: If ``zero_shot`` does not have ``T`` entries.
        MetricUnavailable: With one task, or if a cell just above the diagonal (each task
            before its own training: the tasks seen so far are all a lower triangle has) or
            a zero-shot score it reads is missing.
    """
    a = as_matrix(matrix)
    t = a.shape[0]
    z = as_vector(zero_shot, t, "zero_shot")
    require_tasks(a, 2)
    require_cells(a, above_diagonal(t), "each task's score before its own training (the cells just above the diagonal)")
    if np.isnan(z[1:]).any():
        raise MetricUnavailable("needs the zero-shot score of every task after the first")
    return float(np.mean([a[i - 1, i] - z[i] for i in range(1, t)]))


def metric_inputs(name: str, metric: Callable[..., float]) -> tuple[str, ...]:
    """The inputs a registered stream metric reads: its parameter names, in order.

    Raises:
        ValueError: If a parameter is not one of :data:`STREAM_INPUTS` (a programming error).
    """
    names = tuple(inspect.signature(metric).parameters)
    unknown = [n for n in names if n not in STREAM_INPUTS]
    if unknown or "matrix" not in names:
        raise ValueError(f"metric {name!r} takes {names}; stream metrics take matrix and any of {STREAM_INPUTS[1:]}")
    return names


@dataclass(frozen=True)
class Summary:
    """Every registered stream metric of one matrix.

    Attributes:
        values: Registered name -> value, in name order; ``None`` where unavailable.
        unavailable: Name -> why it could not be computed (cells not evaluated, an input not given).
        conventions: Name -> the definition its value follows (:data:`CONVENTIONS`).
    """

    values: dict[str, float | None]
    unavailable: dict[str, str]
    conventions: dict[str, str]


def summarize(
    matrix: Matrix, zero_shot: Sequence[float | None] | None = None, test_sizes: Sequence[float] | None = None
) -> Summary:
    """Compute every metric registered in :data:`METRICS` for one matrix.

    Each metric gets the inputs its parameters name (:func:`metric_inputs`); one whose input
    is ``None``, or that raises :class:`MetricUnavailable`, is reported unavailable with the reason.

    Args:
        matrix: Square accuracy matrix, ``matrix[k][i]`` (``None`` where not evaluated).
        zero_shot: Score on each task before any training, if known.
        test_sizes: Test-set size of each task, if known.

    Returns:
        The values, the reasons of the unavailable ones and every metric's convention.
    """
    available = {"matrix": matrix, "zero_shot": zero_shot, "test_sizes": test_sizes}
    values: dict[str, float | None] = {}
    unavailable: dict[str, str] = {}
    for name in METRICS.names():
        metric = METRICS.get(name)
        inputs = metric_inputs(name, metric)
        values[name] = None
        missing = [i for i in inputs if available[i] is None]
        if missing:
            unavailable[name] = MISSING_INPUT[missing[0]]
            continue
        try:
            values[name] = float(metric(**{i: available[i] for i in inputs}))
        except MetricUnavailable as reason:
            unavailable[name] = str(reason)
    conventions = {name: CONVENTIONS.get(name) or METRICS.help(name) for name in values}
    return Summary(values, unavailable, conventions)
