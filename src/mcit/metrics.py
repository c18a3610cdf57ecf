"""Continual-learning metrics computed from an accuracy matrix.

``matrix[k][i]`` is the score (usually in [0, 1]) on task ``i`` after training task
``k`` (``k, i = 0 .. T-1``); ``zero_shot[i]`` is the score before any task. Functions are
pure and return python floats; ``nan`` marks an undefined metric (e.g. forgetting with
one task) so a results table stays complete instead of special-casing short streams.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from mcit.registry import Registry

METRICS: Registry = Registry("metric")
Matrix = Sequence[Sequence[float]]
_NAN = float("nan")


def _as_matrix(matrix: Matrix) -> np.ndarray:
    """Return a validated ``(T, T)`` float array, else raise ValueError."""
    rows = [list(r) for r in matrix]
    if not rows:
        raise ValueError("accuracy matrix is empty")
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise ValueError("accuracy matrix is ragged (rows of different lengths)")
    if width != len(rows):
        raise ValueError(f"accuracy matrix must be square, got {len(rows)}x{width}")
    a = np.asarray(rows, dtype=np.float64)
    # NaN would silently propagate into every mean; make missing cells a loud error.
    if not np.all(np.isfinite(a)):
        raise ValueError("accuracy matrix contains non-finite values")
    return a


def _as_vector(values: Sequence[float], size: int, what: str) -> np.ndarray:
    v = np.asarray(list(values), dtype=np.float64)
    if v.shape != (size,):
        raise ValueError(f"{what} must have {size} entries, got {v.size}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{what} contains non-finite values")
    return v


@METRICS.register("final_average_accuracy", help="MFN: mean final score over all tasks")
def final_average_accuracy(matrix: Matrix) -> float:
    """Final average accuracy (MFN): ``mean_i a[T-1][i]``.

    Args:
        matrix: Square accuracy matrix, ``matrix[k][i]``.

    Returns:
        Mean of the last row.
    """
    return float(_as_matrix(matrix)[-1].mean())


@METRICS.register("mean_finetune_accuracy", help="MFT: mean score on each task just after it")
def mean_finetune_accuracy(matrix: Matrix) -> float:
    """Mean fine-tune accuracy (MFT): ``mean_i a[i][i]``.

    Args:
        matrix: Square accuracy matrix, ``matrix[k][i]``.

    Returns:
        Mean of the diagonal.
    """
    return float(np.diag(_as_matrix(matrix)).mean())


@METRICS.register("mean_average_accuracy", help="MAA: mean over steps of the score on seen tasks")
def mean_average_accuracy(matrix: Matrix) -> float:
    """Mean average accuracy (MAA): ``mean_k ( mean_{i<=k} a[k][i] )``.

    Args:
        matrix: Square accuracy matrix, ``matrix[k][i]``.

    Returns:
        Mean over steps ``k`` of the average score on the tasks seen so far.
    """
    a = _as_matrix(matrix)
    return float(np.mean([a[k, : k + 1].mean() for k in range(a.shape[0])]))


@METRICS.register("final_weighted_accuracy", help="FAA: final scores weighted by test-set size")
def final_weighted_accuracy(matrix: Matrix, test_sizes: Sequence[float]) -> float:
    """Final accuracy weighted by test-set size (FAA of the DGG paper).

    Args:
        matrix: Square accuracy matrix, ``matrix[k][i]``.
        test_sizes: Number of test examples of each task (``T`` non-negative values).

    Returns:
        ``sum_i n_i a[T-1][i] / sum_i n_i``.

    Raises:
        ValueError: If ``test_sizes`` has the wrong length, a negative entry or sums to 0.
    """
    a = _as_matrix(matrix)
    n = _as_vector(test_sizes, a.shape[0], "test_sizes")
    if np.any(n < 0) or n.sum() <= 0:
        raise ValueError("test_sizes must be non-negative with a positive sum")
    return float(np.dot(n, a[-1]) / n.sum())


@METRICS.register("average_forgetting", help="mean drop from best earlier to final score")
def average_forgetting(matrix: Matrix) -> float:
    """Average forgetting: ``mean_{i<=T-2} ( max_{l<=T-2} a[l][i] - a[T-1][i] )``.

    This follows the usual 1-indexed definition
    ``mean_{i<T}(max_{l<T} a[l][i] - a[T][i])`` literally: the max runs over ALL
    earlier rows ``l = 0 .. T-2``, including rows before task ``i`` was trained.
    Since that range contains ``l = i``, the result is always ``>= -backward_transfer``.
    It can be negative when the final score beats every earlier one.

    Args:
        matrix: Square accuracy matrix, ``matrix[k][i]``.

    Returns:
        The average forgetting, or ``nan`` when ``T == 1`` (no earlier task).
    """
    a = _as_matrix(matrix)
    t = a.shape[0]
    if t < 2:
        return _NAN
    best = a[: t - 1, : t - 1].max(axis=0)
    return float((best - a[-1, : t - 1]).mean())


@METRICS.register("backward_transfer", help="BWT: mean final minus just-trained score")
def backward_transfer(matrix: Matrix) -> float:
    """Backward transfer (BWT): ``mean_{i<=T-2} ( a[T-1][i] - a[i][i] )``.

    Args:
        matrix: Square accuracy matrix, ``matrix[k][i]``.

    Returns:
        The backward transfer (negative means forgetting), or ``nan`` when ``T == 1``.
    """
    a = _as_matrix(matrix)
    t = a.shape[0]
    if t < 2:
        return _NAN
    return float((a[-1, : t - 1] - np.diag(a)[: t - 1]).mean())


@METRICS.register("forward_transfer", help="FWT: mean gain on next task over zero-shot")
def forward_transfer(matrix: Matrix, zero_shot: Sequence[float]) -> float:
    """Forward transfer (FWT): ``mean_{1<=i<=T-1} ( a[i-1][i] - zero_shot[i] )``.

    Args:
        matrix: Square accuracy matrix, ``matrix[k][i]``.
        zero_shot: Score on each task before any training (``T`` values).

    Returns:
        The forward transfer, or ``nan`` when ``T == 1`` (no task has a predecessor).

    Raises:
        ValueError: If ``zero_shot`` does not have ``T`` finite entries.
    """
    a = _as_matrix(matrix)
    t = a.shape[0]
    z = _as_vector(zero_shot, t, "zero_shot")
    if t < 2:
        return _NAN
    return float(np.mean([a[i - 1, i] - z[i] for i in range(1, t)]))


def summarize(
    matrix: Matrix, zero_shot: Sequence[float], test_sizes: Sequence[float] | None = None
) -> dict[str, float]:
    """Compute the standard metric set for one run.

    Args:
        matrix: Square accuracy matrix, ``matrix[k][i]``.
        zero_shot: Score on each task before any training.
        test_sizes: Optional test-set sizes; adds ``final_weighted_accuracy`` when given.

    Returns:
        Metric key (as registered in ``METRICS``) -> value; undefined ones are ``nan``.
    """
    out = {
        "final_average_accuracy": final_average_accuracy(matrix),
        "mean_finetune_accuracy": mean_finetune_accuracy(matrix),
        "mean_average_accuracy": mean_average_accuracy(matrix),
        "average_forgetting": average_forgetting(matrix),
        "backward_transfer": backward_transfer(matrix),
        "forward_transfer": forward_transfer(matrix, zero_shot),
    }
    if test_sizes is not None:
        out["final_weighted_accuracy"] = final_weighted_accuracy(matrix, test_sizes)
    return out


def relative_gain(final_scores: Mapping[str, float], upper_bounds: Mapping[str, float]) -> float:
    """LAMP relative gain: ``mean_s final[s] / UB[s] * 100``.

    Skills whose upper bound is 0 are skipped, because the ratio is undefined there.

    Args:
        final_scores: Final score of each skill.
        upper_bounds: Upper-bound score of each skill (e.g. single-skill fine-tuning).

    Returns:
        The relative gain in percent, or ``nan`` if no skill has a non-zero bound.

    Raises:
        ValueError: If a skill of ``final_scores`` has no upper bound.
    """
    missing = sorted(set(final_scores) - set(upper_bounds))
    if missing:
        raise ValueError(f"no upper bound for skills: {', '.join(missing)}")
    ratios = [final_scores[s] / upper_bounds[s] * 100 for s in final_scores if upper_bounds[s] != 0]
    return float(np.mean(ratios)) if ratios else _NAN


def forgetting_rate(history: Sequence[Mapping[str, float]]) -> float:
    """LAMP forgetting rate over a sequence of per-skill scores.

    ``mean_{s, t>=1} |min(P_s^t - P_s^{t-1}, 0)| / P_s^{t-1} * 100`` where
    ``history[t][s] = P_s^t``. Only drops count; gains contribute 0. Pairs with
    ``P_s^{t-1} == 0`` are skipped (relative drop undefined), as are skills absent
    from either of two consecutive steps.

    Args:
        history: Per-step mapping from skill name to score.

    Returns:
        The forgetting rate in percent, or ``nan`` when no pair is usable
        (e.g. fewer than two steps).
    """
    rates = []
    for prev, cur in zip(history, history[1:]):
        for s in prev:
            if s in cur and prev[s] != 0:
                rates.append(abs(min(cur[s] - prev[s], 0.0)) / prev[s] * 100)
    return float(np.mean(rates)) if rates else _NAN


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
