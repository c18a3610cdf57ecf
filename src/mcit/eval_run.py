"""``mcit eval``: score any model on a benchmark's evaluation sets, without training.

The columns are what a run of the same config evaluates after every step (a stream's tasks
and eval-only tasks, a pool's skills), with the same scorers and generation budgets, so the
row printed is comparable with every row of a run's accuracy matrix.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mcit.data.collate import Collator
from mcit.device import resolve_device
from mcit.distributed import torch_threads
from mcit.evaluation.evaluate import evaluate_task
from mcit.evaluation.paper import paper_scores
from mcit.models.hf import check_model_dir, load_vlm
from mcit.models.saving import load_saved
from mcit.scenarios import Scenario, build_scenario


def load_for_eval(config, model_path: Path | str | None = None) -> tuple[str, Scenario, torch.nn.Module, Collator, torch.device]:
    """The model to score (default: ``config.model.name``), its collator and device, and the config's scenario.

    ``model_path`` may be a model directory, a peft adapter directory (see
    :func:`mcit.models.saving.load_saved`) or ``"tiny"``. Checks the model path and builds
    the data before loading any weights.

    Returns:
        ``(model name, scenario, model on its device, collator, device)``.
    """
    name = str(model_path) if model_path is not None else config.model.name
    if not (Path(name) / "adapter_config.json").is_file():
        check_model_dir(name)
    torch.set_num_threads(torch_threads(config.threads))
    device = resolve_device(config.device)
    scenario = build_scenario(config)
    if name == "tiny":
        model, processor = load_vlm("tiny", config.model.dtype, scenario.corpus, config.model.seed)
    else:
        model, processor = load_saved(name, config.model.dtype)
    return name, scenario, model.to(device), Collator(processor, config.model.max_length), device


def evaluate_model(
    config, model_path: Path | str | None = None, phase: Callable[[str, int], Callable[[int], None]] | None = None
) -> dict[str, Any]:
    """Scores of ``model_path`` (default: ``config.model.name``) on every evaluation column.

    ``model_path`` may be a model directory or a peft adapter directory (see
    :func:`mcit.models.saving.load_saved`). Checks the model path and builds the data before
    loading any weights.

    Returns:
        ``{"model", "columns", "scores", "evaluations", "seconds"}``, plus ``"paper_scores"``
        (column -> its paper-compatible score, ``None`` where it names no paper scorer) when
        some column names a paper scorer; ``evaluations`` holds each column's
        :meth:`~mcit.evaluation.evaluate.TaskEvaluation.record` (every sample's answer and scores).
    """
    name, scenario, model, collator, device = load_for_eval(config, model_path)
    start = time.perf_counter()
    columns = scenario.columns
    advance = phase("eval", sum(len(t.eval) for t in columns)) if phase is not None else None
    evaluations = [evaluate_task(model, collator, t, config.eval.batch_size, device, on_batch=advance) for t in columns]
    paper = paper_scores(evaluations)
    return {
        "model": name,
        "columns": [t.name for t in columns],
        "scores": {e.task.name: e.score for e in evaluations},
        **({} if paper is None else {"paper_scores": paper}),
        "evaluations": {e.task.name: e.record() for e in evaluations},
        "seconds": time.perf_counter() - start,
    }
