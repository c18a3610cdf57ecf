"""Continual-learning metrics: pure functions of an accuracy matrix (or of per-skill scores).

``matrix[k][i]`` is the score (usually in [0, 1]) on task ``i`` after training task ``k``;
``None`` marks a cell that was not evaluated (a lower-triangle matrix, as MCITlib, CoIN and
HiDe-LLaVA report). Modules, imported one way (``matrix`` <- the others):

* :mod:`~mcit.metrics.matrix`: reading the matrix, the cells a metric needs, :class:`MetricUnavailable`.
* :mod:`~mcit.metrics.stream`: the registered stream metrics (:data:`METRICS`), each with its
  convention (:data:`CONVENTIONS`), and :func:`summarize`, which computes every one of them.
* :mod:`~mcit.metrics.deltas`: the linguistic and vision-language forgetting (Delta).
* :mod:`~mcit.metrics.lamp`: LAMP's relative gain and forgetting rate (pool runs).
"""

from __future__ import annotations

from mcit.metrics.deltas import (
    OMEGAS,
    harmonic_mean_accuracy,
    linguistic_forgetting,
    linguistic_forgetting_by_step,
    plain_mean_accuracy,
    vision_language_forgetting,
    vision_language_forgetting_by_step,
)
from mcit.metrics.lamp import RelativeGain, forgetting_rate, relative_gain, upper_bounds
from mcit.metrics.matrix import Matrix, MetricUnavailable
from mcit.metrics.stream import (
    CONVENTIONS,
    METRICS,
    STREAM_INPUTS,
    Summary,
    average_forgetting,
    average_forgetting_coinpp,
    backward_transfer,
    column_average_accuracy,
    final_average_accuracy,
    final_weighted_accuracy,
    forward_transfer,
    mean_average_accuracy,
    mean_finetune_accuracy,
    metric_inputs,
    summarize,
)

__all__ = [
    "CONVENTIONS", "METRICS", "OMEGAS", "STREAM_INPUTS", "Matrix", "MetricUnavailable", "RelativeGain", "Summary",
    "average_forgetting", "average_forgetting_coinpp", "backward_transfer", "column_average_accuracy",
    "final_average_accuracy", "final_weighted_accuracy", "forgetting_rate", "forward_transfer", "harmonic_mean_accuracy",
    "linguistic_forgetting", "linguistic_forgetting_by_step", "plain_mean_accuracy", "mean_average_accuracy", "mean_finetune_accuracy",
    "metric_inputs", "relative_gain", "summarize", "upper_bounds", "vision_language_forgetting", "vision_language_forgetting_by_step",
]
