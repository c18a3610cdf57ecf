"""End-to-end runs of the tiny model on a 2-task embedded stream, offline on CPU."""

from __future__ import annotations

import json

import pytest
import torch

from mcit.errors import UserError
from mcit.run_setup import Progress
from mcit.runner import Runner
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


def test_the_summary_has_the_nlu_nlg_and_vision_language_deltas(tmp_path):
    """`mcit run` with every language skill: Deltas per kind and per step, recomputable from the rows, and printed."""
    from typer.testing import CliRunner

    from conftest import tiny_overrides
    from mcit import metrics
    from mcit.cli import app

    overrides = tiny_overrides(**{
        "benchmark.eval_only": "[compare, choice, arithmetic, reverse, plural]",
        "benchmark.base.tasks": "[describe, compare, choice, arithmetic, reverse, plural]",
        "benchmark.base.samples_per_task": 16, "benchmark.train_per_task": 32, "benchmark.eval_per_task": 6,
    })
    result = CliRunner().invoke(app, ["run", *overrides, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "run" / "results.json").read_text())

    groups = results["linguistic_forgetting"]
    assert list(groups) == ["all", "nlu", "nlg"]
    assert groups["nlu"]["tasks"] == ["compare", "choice"] and groups["nlg"]["tasks"] == ["arithmetic", "reverse", "plural"]
    assert groups["all"]["tasks"] == ["compare", "choice", "arithmetic", "reverse", "plural"]
    # the headline omega is the harmonic mean over every language set, the breakdown the plain mean of each kind
    for group, mean in ((groups["all"], metrics.harmonic_mean_accuracy), (groups["nlu"], metrics.plain_mean_accuracy), (groups["nlg"], metrics.plain_mean_accuracy)):
        reference = [results["zero_shot"][name] for name in group["tasks"]]
        rows = [[row["scores"][name] for name in group["tasks"]] for row in results["rows"]]
        assert group["zero_shot"] == pytest.approx(mean(reference))
        assert group["current"] == pytest.approx(mean(rows[-1]))
        assert group["by_step"] == pytest.approx([mean(reference) - mean(row) for row in rows])
        assert len(group["by_step"]) == len(results["rows"]) == 2 and group["forgetting"] == group["by_step"][-1]
    vision = results["vision_language_forgetting"]
    assert vision["tasks"] == ["color", "count"] and len(vision["by_step"]) == 2
    assert vision["by_step"][0] is None, "undefined after the first task (NaN, stored as null)"
    assert vision["forgetting"] == vision["by_step"][1] == pytest.approx(-results["metrics"]["backward_transfer"])
    assert set(results["language"]) == set(results["eval_only"]), "the per-task entries stay"
    for label in (
        "language Delta vs zero-shot (compare, choice, arithmetic, reverse, plural)",
        "NLU Delta vs zero-shot (compare, choice)", "NLG Delta vs zero-shot (arithmetic, reverse, plural)", "VL Delta",
    ):  # fmt: skip
        assert label in result.output, result.output


def test_rows_record_the_parameters_each_task_trained_and_olora_growth(tmp_path, tiny_config):
    results = Runner(tiny_config(method="[olora]", **{"model.trainable": "[]"}), tmp_path / "run").run()
    first, second = results["rows"]
    assert first["trained_parameters"] == second["trained_parameters"] > 0  # one adapter of rank r per task
    assert second["model_parameters"] - first["model_parameters"] == second["trained_parameters"]


def test_tensorboard_tracker_mirrors_the_loss_and_every_steps_scores(tmp_path, tiny_config):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    results = Runner(tiny_config(trackers="[tensorboard]"), tmp_path / "run").run()
    logs = [p.parent for p in (tmp_path / "run" / "logs").rglob("events.out.tfevents.*")]
    assert logs, "TensorBoard wrote its event file under RUN/logs"
    events = EventAccumulator(str(logs[0]))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "score/color", "score/count", "metric/average_forgetting"} <= tags
    color = [e.value for e in events.Scalars("score/color")]
    assert color == pytest.approx([row["scores"]["color"] for row in results["rows"]])
    assert [e.step for e in events.Scalars("score/color")] == [1, 2]


def test_a_tracker_without_its_package_is_refused_before_anything_is_written(tmp_path, tiny_config, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(UserError, match='pip install "mcit\\[wandb\\]"'):
        Runner(tiny_config(trackers="[wandb]"), tmp_path / "run").run()
    assert not (tmp_path / "run").exists()
