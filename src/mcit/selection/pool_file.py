"""Selection alone: choose a budget of a LLaVA-format pool with a model (``mcit select``)."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from mcit.data.collate import Collator
from mcit.data.llava_json import load_llava_json
from mcit.errors import UserError, first_error
from mcit.models.hf import configure_trainable, load_vlm
from mcit.selection.base import HiddenSkills, SelectionContext, Selector, build_selector


def build_named_selector(name: str, options: dict[str, Any]) -> Selector:
    """The registered selector ``name`` with ``options``, validated as a run config's would be."""
    try:
        return build_selector(name, options)
    except ValidationError as error:
        raise UserError(f"selector {name!r}: {first_error(error)}") from None


def select_pool(
    pool_path: Path,
    budget: int,
    method: str,
    model_path: str,
    *,
    options: dict[str, Any] | None = None,
    image_root: Path | None = None,
    seed: int = 0,
    device: str = "cpu",
    work_dir: Path | None = None,
    progress=None,
) -> dict[str, Any]:
    """Select ``budget`` records of a LLaVA JSON pool; returns the JSON written by ``mcit select``.

    Raises:
        UserError: Bad pool file or records, unknown selector or options, a budget <= 0 or
            larger than the pool, a model path that is not a model.
    """
    selector = build_named_selector(method, options or {})
    if budget <= 0:
        raise UserError(f"--budget must be positive (got {budget})")
    pool = load_llava_json(pool_path, image_root)
    if budget > len(pool):
        raise UserError(f"--budget {budget} is larger than the pool ({len(pool)} samples in {pool_path})")
    model, processor = load_vlm(model_path)
    # Gradient features need parameters that require grad; nothing is trained here.
    model = configure_trainable(model, ["vision", "projector", "language_model"]).to(torch.device(device))
    context = SelectionContext(model, Collator(processor), torch.device(device), seed, work_dir)
    if progress is not None:
        context.progress = progress
    start = time.perf_counter()
    try:
        selection = selector.select(context, HiddenSkills(pool), np.arange(len(pool)), budget)
    finally:
        if work_dir is not None:
            shutil.rmtree(work_dir, ignore_errors=True)  # scratch feature files
    seconds = time.perf_counter() - start
    chosen = []
    for k, index in enumerate(selection.indices):
        entry: dict[str, Any] = {"id": pool.json_ids[int(index)]}  # the record's own id, number or string
        if selection.clusters is not None:
            entry["cluster"] = int(selection.clusters[k])
        if selection.scores is not None:
            entry["score"] = selection.scores[k]
        chosen.append(entry)
    per_cluster = Counter(e["cluster"] for e in chosen if "cluster" in e)
    return {
        "pool": str(pool_path),
        "pool_size": len(pool),
        "method": method,
        "options": options or {},
        "budget": budget,
        "seed": seed,
        "model": str(model_path),
        "seconds": seconds,
        "selected": chosen,
        "selected_per_cluster": {str(c): n for c, n in sorted(per_cluster.items())},
        "summary": selection.summary,
    }
