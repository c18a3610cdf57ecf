"""Shared fixtures: a tiny, fast configuration of the embedded stream."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def tiny_overrides(**extra: object) -> list[str]:
    """Overrides that shrink the default run to a couple of seconds (2 tasks + 1 eval-only)."""
    values = {
        "benchmark.tasks": "[color, count]",
        "benchmark.eval_only": "[arithmetic]",
        "benchmark.train_per_task": 48,
        "benchmark.eval_per_task": 12,
        "benchmark.base.samples_per_task": 32,
        "benchmark.base.train.epochs": 1,
        "train.epochs": 1,
        "train.batch_size": 16,
        "eval.batch_size": 16,
    }
    values.update(extra)
    return [f"{key}={value}" for key, value in values.items()]


@pytest.fixture
def tiny_config():
    from mcit.config import load_config

    def make(**extra: object):
        return load_config(None, tiny_overrides(**extra))

    return make
