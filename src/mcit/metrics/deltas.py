"""The linguistic and vision-language forgetting (Delta) of Srivastava et al.

omega is the harmonic mean of a group's scores; Delta is the drop of omega from a reference.
The scenarios call these with the scores they have (the eval-only language tasks, the
trained tasks); they are not registered stream metrics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mcit.metrics.matrix import Matrix, as_matrix, diagonal, last_row, require_cells

_NAN = float("nan")


def harmonic_mean_accuracy(scores: Sequence[float]) -> float:
    """Harmonic mean of scores (omega of Srivastava et al.).

    Args:
        scores: Non-negative scores, e.g. accuracies on language-only benchmarks.

    Returns:
        The harmonic mean; 0 if any score is 0 (its limit), ``nan`` if ``scores`` is empty.

    Raises:
        ValueError: If a score is negative or not finite.
    """
    values = [float(x) for x in scores]
    if not values:
        return _NAN
    if any(not math.isfinite(x) or x < 0 for x in values):
        raise ValueError("harmonic mean needs finite non-negative scores")
    if any(x == 0 for x in values):
        return 0.0
    return len(values) / sum(1.0 / x for x in values)


def linguistic_forgetting(reference_omega: float, current_omega: float) -> float:
    """Linguistic forgetting: drop of omega relative to a reference model.

    Args:
        reference_omega: Harmonic-mean accuracy of the reference (e.g. base LLM).
        current_omega: Harmonic-mean accuracy of the current model.

    Returns:
        ``reference_omega - current_omega``; positive means forgetting.
    """
    return float(reference_omega - current_omega)


def plain_mean_accuracy(scores: Sequence[float]) -> float:
    """The plain mean of scores (Srivastava et al.'s NLU/NLG breakdown); ``nan`` if empty."""
    values = [float(x) for x in scores]
    return sum(values) / len(values) if values else _NAN


# How a group of language scores becomes one omega: the paper's headline Delta takes the
# harmonic mean over all language sets, its NLU/NLG breakdown the plain mean of each kind.
OMEGAS = {"harmonic": harmonic_mean_accuracy, "plain": plain_mean_accuracy}


def linguistic_forgetting_by_step(
    reference_scores: Sequence[float], scores_by_step: Sequence[Sequence[float]], omega: str = "harmonic"
) -> list[float]:
    """Linguistic forgetting (Delta) of one group of language tasks after every step.

    ``Delta_k = omega(reference_scores) - omega(scores_by_step[k])`` with omega the
    :func:`harmonic_mean_accuracy` over the group's tasks, so a group is 0 as soon as one of
    its tasks is (e.g. reference ``[1.0, 0.5]``: omega 2/3; a step at ``[0.5, 0.5]``: Delta
    1/6; a step at ``[0.0, 1.0]``: Delta 2/3).

    Args:
        reference_scores: The group's scores of the reference model (e.g. the zero-shot row:
            the model after the base stage), one per task.
        scores_by_step: The group's scores after each step, in the same task order.
        omega: ``"harmonic"`` (the paper's omega, the default) or ``"plain"`` (its NLU/NLG
            breakdown): how a group's scores become one (see ``OMEGAS``).

    Returns:
        One Delta per step (positive means forgetting).

    Raises:
        ValueError: If a step has another number of scores than the reference, or a score
            is negative or not finite.
    """
    mean = OMEGAS[omega]
    reference = mean(reference_scores)
    deltas = []
    for step in scores_by_step:
        if len(step) != len(reference_scores):
            raise ValueError(f"a step has {len(step)} scores, the reference {len(reference_scores)}")
        deltas.append(linguistic_forgetting(reference, mean(step)))
    return deltas


def vision_language_forgetting(matrix: Matrix) -> float:
    """Vision-language Delta: ``mean_{i<=T-2} ( a[i][i] - a[T-1][i] )``.

    The linguistic Delta applied to each trained task: omega of one task is its score, the
    reference is the model right after training that task, and the mean runs over the tasks
    trained before the last. It equals ``-backward_transfer`` (positive means forgetting).

    Args:
        matrix: Square accuracy matrix, ``matrix[k][i]`` (``None`` where not evaluated).

    Returns:
        The mean drop, or ``nan`` when ``T == 1`` (no task before the last).

    Raises:
        MetricUnavailable: If a cell of the diagonal or the final row was not evaluated.
    """
    a = as_matrix(matrix)
    t = a.shape[0]
    if t < 2:
        return _NAN
    require_cells(a, diagonal(t) | last_row(t), "the diagonal and the final row")
    return float((np.diag(a)[: t - 1] - a[-1, : t - 1]).mean())


def vision_language_forgetting_by_step(matrix: Matrix) -> list[float]:
    """:func:`vision_language_forgetting` after every step ``k``: of the leading ``(k+1)`` square.

    Args:
        matrix: Square accuracy matrix, ``matrix[k][i]`` (``None`` where not evaluated).

    Returns:
        ``T`` values; the first is ``nan`` (nothing trained before the first task).
    """
    a = as_matrix(matrix)
    return [vision_language_forgetting(a[: k + 1, : k + 1].tolist()) for k in range(a.shape[0])]
