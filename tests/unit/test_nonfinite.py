"""A NaN/inf loss stops the task with a clear error (or skips the batch when asked)."""

from __future__ import annotations

import pytest
import torch

import mcit.runner
import mcit.training.loop
from conftest import tiny_overrides
from mcit.config import load_config
from mcit.runner import Runner
from mcit.store import RunStore
from mcit.strategies import Strategy, StrategyChain


class NanOnSecondTask(Strategy):
    """Poisons the loss of every second batch, from the second task on."""

    def loss(self, ctx, batch, outputs, loss):
        if ctx.task.index >= 1 and ctx.step % 2 == 1:
            return loss * float("nan")
        return loss


@pytest.fixture
def poisoned(monkeypatch):
    monkeypatch.setattr(mcit.runner, "build_strategy", lambda config: StrategyChain([("nan", NanOnSecondTask())]))


def test_nan_loss_stops_the_task_and_keeps_the_last_finished_one(tmp_path, poisoned):
    config = load_config(None, tiny_overrides())
    with pytest.raises(mcit.training.loop.NonFiniteLossError, match=r"task 'count', step 2/\d+: the loss is nan"):
        Runner(config, tmp_path / "run").run()
    store = RunStore(tmp_path / "run")
    results = store.read_results()
    assert [row["after"] for row in results["rows"]] == ["color"]
    assert results["complete"] is False
    assert store.checkpoint_names() == ["task-001"]
    state, _ = store.load_checkpoint("task-001")
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_skip_mode_skips_bad_batches_and_counts_them(tmp_path, poisoned):
    config = load_config(None, tiny_overrides(**{"train.on_nonfinite": "skip"}))
    results = Runner(config, tmp_path / "run").run()
    assert results["complete"] is True
    first, second = results["rows"]
    assert first["skipped_batches"] == 0
    assert second["skipped_batches"] == second["train_steps"] // 2
    state, _ = RunStore(tmp_path / "run").load_checkpoint("task-002")
    assert all(torch.isfinite(t).all() for t in state["model"].values())
