"""End-to-end runs of the tiny model on a 2-task embedded stream, offline on CPU."""

from __future__ import annotations

import json

import pytest
import torch

from mcit.errors import UserError
from mcit.runner import Progress, Runner
from mcit.store import RunStore
from mcit.strategies import STRATEGIES


class Interrupt(Exception):
    """Raised from a progress callback to simulate a run killed at a given phase."""


def interrupting_progress(prefix: str) -> Progress:
    def phase(description: str, total: int):
        if description.startswith(prefix):
            raise Interrupt(description)
        return lambda advance: None

    return Progress(phase=phase)


def final_weights(run_dir, count: int) -> dict[str, torch.Tensor]:
    state, _ = RunStore(run_dir).load_checkpoint(f"task-{count:03d}")
    return state["model"]


def test_end_to_end_writes_matrix_metrics_and_checkpoints(tmp_path, tiny_config):
    config = tiny_config()
    results = Runner(config, tmp_path / "run").run()

    assert results["complete"] is True
    assert results["tasks"] == ["color", "count"] and results["eval_only"] == ["arithmetic"]
    assert len(results["matrix"]) == 2 and all(len(row) == 3 for row in results["matrix"])
    assert all(0.0 <= v <= 1.0 for row in results["matrix"] for v in row)
    assert set(results["zero_shot"]) == {"color", "count", "arithmetic"}
    assert {"final_average_accuracy", "average_forgetting", "backward_transfer", "forward_transfer"} <= set(
        results["metrics"]
    )
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["matrix"] == results["matrix"]
    assert RunStore(tmp_path / "run").checkpoint_names() == ["task-002"], "by default only what resume needs is kept"
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert (tmp_path / "run" / "base_model" / "model.safetensors").is_file()
    trainable = {row["part"]: row["trainable"] for row in results["parameters"]}
    assert trainable["projector"] > 0
    # Every evaluation keeps each sample's answer and score; the matrix entry is their mean.
    evaluations = sorted(p.name for p in (tmp_path / "run" / "evaluations").iterdir())
    assert evaluations == ["00-zero-shot.json", "01-color.json", "02-count.json"]
    after_count = json.loads((tmp_path / "run" / "evaluations" / "02-count.json").read_text())
    for column, score in zip(results["tasks"] + results["eval_only"], results["matrix"][1]):
        samples = after_count[column]["samples"]
        assert len(samples) == results["test_sizes"][column]
        assert {"id", "prediction", "references", "score"} <= set(samples[0])
        assert sum(row["score"] for row in samples) / len(samples) == pytest.approx(score)


def interrupting_step(prefix: str, steps: int) -> Progress:
    """Raise after ``steps`` optimizer steps of the phase starting with ``prefix`` (a mid-task kill)."""

    def phase(description: str, total: int):
        done = [0]

        def advance(count: int) -> None:
            done[0] += count
            if description.startswith(prefix) and done[0] >= steps:
                raise Interrupt(f"{description} at step {done[0]}")

        return advance

    return Progress(phase=phase)


def smallest_chain(method: str) -> str:
    """``[method]``, preceded by a registered method that provides each role it requires (dgg: er)."""
    def default(name: str):
        return STRATEGIES.get(name).options_class()

    needed = STRATEGIES.get(method).requires(default(method))
    providers = [n for n in STRATEGIES if n != method and set(needed) & STRATEGIES.get(n).provides(default(n))]
    return f"[{', '.join([*providers[:1], method] if needed else [method])}]"


@pytest.mark.parametrize("method", STRATEGIES.names())
def test_every_method_resumes_to_the_uninterrupted_result(tmp_path, tiny_config, method):
    """The test matrix over every registered method: run, and run killed mid-task 2 + resumed.

    With ``checkpoint_every=1`` the resumed run restores task 1's checkpoint, runs task 2's
    start hooks, then continues from the mid-task checkpoint at step 2 of 3: equal weights
    show that every method's state covers what it changes during a task.
    """
    config = tiny_config(method=smallest_chain(method), **{"train.checkpoint_every": 1})
    straight = Runner(config, tmp_path / "straight").run()

    with pytest.raises(Interrupt):
        Runner(config, tmp_path / "resumed", interrupting_step("task 2/", 2)).run()
    partial = RunStore(tmp_path / "resumed").read_results()
    assert len(partial["rows"]) == 1 and partial["complete"] is False
    assert RunStore(tmp_path / "resumed").has_checkpoint("partial")
    messages: list[str] = []
    resumed = Runner(config, tmp_path / "resumed", Progress(message=messages.append)).run()

    assert any("resuming at step 2" in m for m in messages), messages
    assert resumed["matrix"] == straight["matrix"]
    assert resumed["zero_shot"] == straight["zero_shot"]
    assert resumed["metrics"] == straight["metrics"]
    a, b = final_weights(tmp_path / "straight", 2), final_weights(tmp_path / "resumed", 2)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not RunStore(tmp_path / "resumed").has_checkpoint("partial"), "committed tasks drop their mid-task checkpoint"


def test_resume_at_a_task_boundary_without_mid_task_checkpoints(tmp_path, tiny_config):
    config = tiny_config(method="[er]")
    straight = Runner(config, tmp_path / "straight").run()
    with pytest.raises(Interrupt):
        Runner(config, tmp_path / "resumed", interrupting_progress("task 2/")).run()
    resumed = Runner(config, tmp_path / "resumed").run()
    assert resumed["matrix"] == straight["matrix"]
    a, b = final_weights(tmp_path / "straight", 2), final_weights(tmp_path / "resumed", 2)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_finished_task_is_not_redone_on_resume(tmp_path, tiny_config):
    config = tiny_config()
    with pytest.raises(Interrupt):
        Runner(config, tmp_path / "run", interrupting_progress("eval after count")).run()
    first = RunStore(tmp_path / "run").read_results()["rows"][0]
    phases: list[str] = []

    def phase(description: str, total: int):
        phases.append(description)
        return lambda advance: None

    resumed = Runner(config, tmp_path / "run", Progress(phase=phase)).run()
    assert resumed["rows"][0] == first
    assert not any(p.startswith(("base stage", "task 1/", "zero-shot")) for p in phases)
    assert any(p.startswith("task 2/") for p in phases)


def test_run_directory_of_another_config_is_refused_unless_forced(tmp_path, tiny_config):
    Runner(tiny_config(), tmp_path / "run").run()
    other = tiny_config(**{"train.lr": 5e-4})
    with pytest.raises(UserError, match="different config"):
        Runner(other, tmp_path / "run").run()
    assert Runner(other, tmp_path / "run", force=True).run()["complete"] is True


def test_seqft_forgets_and_er_remembers(tmp_path, tiny_config):
    """The phenomenon the project measures, on a stream small enough for CI.

    ER reuses the base model that the seqft run trained (``model.name`` = its directory,
    no base stage), so both runs start from the same weights.
    """
    settings = {
        "benchmark.train_per_task": 800,
        "benchmark.eval_per_task": 50,
        "benchmark.base.samples_per_task": 1500,
        "benchmark.base.train.epochs": 3,
        "train.epochs": 3,
    }
    seqft = Runner(tiny_config(**settings), tmp_path / "seqft").run()
    shared_base = {"model.name": str(tmp_path / "seqft" / "base_model"), "benchmark.base": "null"}
    er = Runner(tiny_config(**settings, **shared_base, method="[{name: er, buffer_per_task: 200}]"), tmp_path / "er").run()
    assert er["zero_shot"] == seqft["zero_shot"]
    assert seqft["matrix"][0][0] >= 0.5, "color was not learned; the forgetting test would be vacuous"
    assert seqft["metrics"]["average_forgetting"] >= 0.3
    assert er["metrics"]["average_forgetting"] < seqft["metrics"]["average_forgetting"] - 0.2


def test_keep_checkpoints_null_keeps_every_task_checkpoint(tmp_path, tiny_config):
    Runner(tiny_config(keep_checkpoints="null"), tmp_path / "run").run()
    assert RunStore(tmp_path / "run").checkpoint_names() == ["task-001", "task-002"]


def _tensors(tree) -> list:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for value in tree.values() for t in _tensors(value)]
    if isinstance(tree, (list, tuple)):
        return [t for value in tree for t in _tensors(value)]
    return []


@pytest.mark.parametrize("method", ["er", "agem", "joint"])
def test_checkpointed_strategy_state_holds_sample_references_not_pixels(tmp_path, tiny_config, method):
    results = Runner(tiny_config(method=f"[{method}]"), tmp_path / "run").run()
    state, _ = RunStore(tmp_path / "run").load_checkpoint("task-002")
    strategy = state["strategy"][f"0:{method}"]
    kept = strategy["seen"] if method == "joint" else strategy["buffers"]
    assert list(kept) == ["color", "count"] and all(isinstance(i, str) for ids in kept.values() for i in ids)
    assert all(t.dtype != torch.uint8 for t in _tensors(strategy)), "no image bytes in the state"
    tree_bytes = (tmp_path / "run" / "checkpoints" / "task-002" / "tree.json").stat().st_size
    assert tree_bytes < 20_000, tree_bytes
    assert results["complete"]


def test_dgg_needs_a_replay_method_unless_it_is_the_guidance_only_ablation(tiny_config):
    with pytest.raises(UserError, match=r"method 'dgg' needs a replay method in the chain: .*\[er, dgg\]"):
        tiny_config(method="[dgg]")
    with pytest.raises(UserError, match="needs a replay method"):
        tiny_config(method="[agem, dgg]")  # A-GEM's memory is never mixed into training
    assert [m.name for m in tiny_config(method="[er, dgg]").method] == ["er", "dgg"]
    assert tiny_config(method="[{name: dgg, guidance_only: true}]").method[0].options()["guidance_only"] is True
