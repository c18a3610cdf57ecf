"""The base stage: a model taught the stream's formats once, before the first task, and the model the steps start from.

A scenario with a base stage (``benchmark.base``) trains the configured model on its base
data once and saves it as ``<run>/base_model`` (save_pretrained); every run of the same
directory, resumed or not, then loads that saved model, so an uninterrupted run and a
resumed one start from the same bytes.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mcit.config import RunConfig
from mcit.data.collate import Collator
from mcit.distributed import World
from mcit.models.hf import configure_trainable, load_vlm
from mcit.scenarios import Scenario
from mcit.seeds import derive_seed
from mcit.store import BASE_DIR
from mcit.strategies import Context, Strategy, TaskView

# Trains ``ctx``'s model on the data with a strategy and settings, under a progress label (the runner's training).
Train = Callable[..., Any]


def needs_base_stage(config: RunConfig, scenario: Scenario) -> bool:
    return scenario.base_train is not None and config.benchmark.base is not None


def base_saved(run_dir: Path) -> bool:
    return (run_dir / BASE_DIR / "config.json").is_file()


def load_source(config: RunConfig, scenario: Scenario, run_dir: Path):
    """The configured model and processor, unless a saved base model replaces them (then ``None``).

    Loaded before anything is written, so a model that fails to load leaves no file.
    """
    if needs_base_stage(config, scenario) and base_saved(run_dir):
        return None
    model = config.model
    return load_vlm(model.name, model.dtype, scenario.corpus, model.seed)


def stream_model(config: RunConfig, scenario: Scenario, source, run_dir: Path, device: torch.device, world: World, train: Train):
    """The model the steps start from: the base stage's (trained once with ``train``, saved by rank 0), or ``source``."""
    if not needs_base_stage(config, scenario):
        return source
    target = run_dir / BASE_DIR
    if not base_saved(run_dir):
        model, processor = source
        model = configure_trainable(model, ["vision", "projector", "language_model"]).to(device)
        seed = derive_seed(config.seed, -1, "train")
        collator = Collator(processor, config.model.max_length)
        # The base stage trains whole replicas (data parallel) even under FSDP: it saves a whole model.
        replicas = dataclasses.replace(world, sharded=False)
        ctx = Context(model, TaskView(-1, "base", scenario.base_train), seed, device, collator, world=replicas)
        train(ctx, scenario.base_train, Strategy(), config.benchmark.base.train, "base stage")
        if world.is_main:
            staging = run_dir / f".tmp-{BASE_DIR}"
            shutil.rmtree(staging, ignore_errors=True)  # left by a run killed while saving
            model.save_pretrained(staging)
            processor.save_pretrained(staging)
            staging.rename(target)
        world.barrier()
    return load_vlm(str(target), config.model.dtype, scenario.corpus, config.model.seed)
