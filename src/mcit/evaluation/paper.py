"""Paper-compatible scores of a run: each task's number as its paper's evaluation script computes it.

A task may name a ``paper_scorer`` beside its ``scorer`` (:class:`mcit.data.sample.Task`).
Every evaluation scores the same answers with both; the accuracy matrix and every metric hold
the ``scorer``'s number, which mcit computes the way the benchmark defines it, and
``results.json`` keeps the paper's numbers beside them, so a published number can be checked
against the same predictions:

* ``row["paper_scores"]``: task -> the paper scorer's score after that step;
* ``results["paper"]``: ``scorers`` (column -> paper scorer, ``None`` where the task names
  none), ``columns`` (the matrix's column order), ``zero_shot`` and ``matrix`` (rows as
  ``results["matrix"]``; ``None`` where a task names no paper scorer).

A run none of whose tasks names a paper scorer has neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mcit.data.sample import Task
from mcit.evaluation.evaluate import TaskEvaluation


def paper_scores(evaluations: Sequence[TaskEvaluation]) -> dict[str, float | None] | None:
    """Task -> paper score of one evaluation pass (``None`` for a task without a paper scorer);
    ``None`` when no task names one."""
    if all(evaluation.task.paper_scorer is None for evaluation in evaluations):
        return None
    return {evaluation.task.name: evaluation.paper_score for evaluation in evaluations}


def paper_section(columns: Sequence[Task], zero_shot: dict[str, float | None]) -> dict[str, Any]:
    """``results["paper"]`` before any step: the columns' paper scorers and the zero-shot paper scores."""
    return {
        "scorers": {task.name: task.paper_scorer for task in columns},
        "columns": [task.name for task in columns],
        "zero_shot": zero_shot,
        "matrix": [],
    }


def update_paper_matrix(results: dict[str, Any]) -> None:
    """Rebuild ``results["paper"]["matrix"]`` from the rows' paper scores (a no-op for a run without them)."""
    paper = results.get("paper")
    if paper is None:
        return
    paper["matrix"] = [[row.get("paper_scores", {}).get(name) for name in paper["columns"]] for row in results["rows"]]
