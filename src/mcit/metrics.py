"""Continual-learning metrics computed from an accuracy matrix.

``matrix[k][i]`` is the score (usually in [0, 1]) on task ``i`` after training task
``k`` (``k, i = 0 .. T-1``); ``zero_shot[i]`` is the score before any task. Functions are
pure and return python floats; ``nan`` marks an undefined metric (e.g. forgetting with
one task) so a results table stays complete instead of special-casing short streams.

The stream metrics are registered in :data:`METRICS` and :func:`summarize` computes every
one of them; LAMP's relative gain and forgetting rate and the linguistic forgetting take
other inputs (per-skill scores, omega) and are called by the scenarios that have them, as is
the vision-language Delta (:func:`vision_language_forgetting`, which is ``-BWT``).
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mcit.registry import Registry

METRICS: Registry = Registry("metric")
"""Stream metrics: functions of ``matrix`` and, by parameter name, ``zero_shot`` / ``test_sizes``."""
STREAM_INPUTS = ("matrix", "zero_shot", "test_sizes")
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


def summarize(
    matrix: Matrix, zero_shot: Sequence[float], test_sizes: Sequence[float] | None = None
) -> dict[str, float]:
    """Compute every metric registered in :data:`METRICS` for one run.

    Each metric gets the inputs its parameters name (:func:`metric_inputs`); one that needs
    ``test_sizes`` is left out when ``test_sizes`` is ``None``.

    Args:
        matrix: Square accuracy matrix, ``matrix[k][i]``.
        zero_shot: Score on each task before any training.
        test_sizes: Optional test-set sizes (adds ``final_weighted_accuracy``).

    Returns:
        Registered name -> value, in name order; undefined ones are ``nan``.
    """
    available = {"matrix": matrix, "zero_shot": zero_shot, "test_sizes": test_sizes}
    out = {}
    for name in METRICS.names():
        metric = METRICS.get(name)
        inputs = metric_inputs(name, metric)
        if all(available[i] is not None for i in inputs):
            out[name] = float(metric(**{i: available[i] for i in inputs}))
    return out


@dataclass(frozen=True)
class RelativeGain:
    """LAMP's relative gain and the skills it had to leave out.

    Attributes:
        percent: ``mean_s final[s] / UB[s] * 100`` over skills with a non-zero bound
            (``nan`` if there is none).
        skipped_skills: Skills left out because their upper bound is 0 (ratio undefined), sorted.
    """

    percent: float
    skipped_skills: tuple[str, ...]


def relative_gain(final_scores: Mapping[str, float], upper_bounds: Mapping[str, float]) -> RelativeGain:
    """LAMP relative gain: ``mean_s final[s] / UB[s] * 100``, and which skills it skipped.

    A skill whose upper bound is 0 has no defined ratio; it is left out of the mean and
    named in ``skipped_skills``, so a caller can report it rather than lose it silently.

    Args:
        final_scores: Final score of each skill.
        upper_bounds: Upper-bound score of each skill (e.g. single-skill fine-tuning).

    Returns:
        The gain over the skills with a non-zero bound (``nan`` if none) and the skipped skills.

    Raises:
        ValueError: If a skill of ``final_scores`` has no upper bound.
    """
    missing = sorted(set(final_scores) - set(upper_bounds))
    if missing:
        raise ValueError(f"no upper bound for skills: {', '.join(missing)}")
    ratios = [final_scores[s] / upper_bounds[s] * 100 for s in final_scores if upper_bounds[s] != 0]
    skipped = tuple(sorted(s for s in final_scores if upper_bounds[s] == 0))
    return RelativeGain(float(np.mean(ratios)) if ratios else _NAN, skipped)


def forgetting_rate(history: Sequence[Mapping[str, float]]) -> float:
    """LAMP forgetting rate over a sequence of per-skill scores.

    ``1/(S T) sum_{s, t>=1} |min(P_s^t - P_s^{t-1}, 0)| / P_s^{t-1} * 100`` where
    ``history[t][s] = P_s^t``: the mean over every (skill, step) pair. Only drops count,
    so a gain contributes 0, and so does a pair with ``P_s^{t-1} == 0`` (a score of 0
    cannot drop); leaving such pairs out of the mean would inflate it. A skill absent from
    either of two consecutive steps forms no pair there.

    Args:
        history: Per-step mapping from skill name to a non-negative score.

    Returns:
        The forgetting rate in percent, or ``nan`` when there is no pair (e.g. fewer than
        two steps).

    Raises:
        ValueError: If a score is negative or not finite.
    """
    rates = []
    for step in history:
        if any(not math.isfinite(v) or v < 0 for v in step.values()):
            raise ValueError(f"forgetting rate needs finite non-negative scores, got {dict(step)}")
    for prev, cur in itertools.pairwise(history):
        for s in prev:
            if s in cur:
                drop = max(prev[s] - cur[s], 0.0)
                rates.append(drop / prev[s] * 100 if drop > 0 else 0.0)
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


def linguistic_forgetting_by_step(reference_scores: Sequence[float], scores_by_step: Sequence[Sequence[float]]) -> list[float]:
    """Linguistic forgetting (Delta) of one group of language tasks after every step.

    ``Delta_k = omega(reference_scores) - omega(scores_by_step[k])`` with omega the
    :func:`harmonic_mean_accuracy` over the group's tasks, so a group is 0 as soon as one of
    its tasks is (e.g. reference ``[1.0, 0.5]``: omega 2/3; a step at ``[0.5, 0.5]``: Delta
    1/6; a step at ``[0.0, 1.0]``: Delta 2/3).

    Args:
        reference_scores: The group's scores of the reference model (e.g. the zero-shot row:
            the model after the base stage), one per task.
        scores_by_step: The group's scores after each step, in the same task order.

    Returns:
        One Delta per step (positive means forgetting).

    Raises:
        ValueError: If a step has another number of scores than the reference, or a score
            is negative or not finite.
    """
    reference = harmonic_mean_accuracy(reference_scores)
    deltas = []
    for step in scores_by_step:
        if len(step) != len(reference_scores):
            raise ValueError(f"a step has {len(step)} scores, the reference {len(reference_scores)}")
        deltas.append(linguistic_forgetting(reference, harmonic_mean_accuracy(step)))
    return deltas


def vision_language_forgetting(matrix: Matrix) -> float:
    """Vision-language Delta: ``mean_{i<=T-2} ( a[i][i] - a[T-1][i] )``.

    The linguistic Delta applied to each trained task: omega of one task is its score, the
    reference is the model right after training that task, and the mean runs over the tasks
    trained before the last. It equals ``-backward_transfer`` (positive means forgetting).

    Args:
        matrix: Square accuracy matrix, ``matrix[k][i]``.

    Returns:
        The mean drop, or ``nan`` when ``T == 1`` (no task before the last).
    """
    a = _as_matrix(matrix)
    t = a.shape[0]
    if t < 2:
        return _NAN
    return float((np.diag(a)[: t - 1] - a[-1, : t - 1]).mean())


def vision_language_forgetting_by_step(matrix: Matrix) -> list[float]:
    """:func:`vision_language_forgetting` after every step ``k``: of the leading ``(k+1)`` square.

    Args:
        matrix: Square accuracy matrix, ``matrix[k][i]``.

    Returns:
        ``T`` values; the first is ``nan`` (nothing trained before the first task).
    """
    a = _as_matrix(matrix)
    return [vision_language_forgetting(a[: k + 1, : k + 1].tolist()) for k in range(a.shape[0])]
