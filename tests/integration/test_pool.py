"""The pool (LiIT) scenario end to end on the tiny model: every registered selector."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import tiny_overrides
from mcit.config import load_config
from mcit.errors import UserError
from mcit.run_setup import Progress
from mcit.runner import Runner
from mcit.selection import SELECTORS
from mcit.store import RunStore


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    """One base stage shared by every run of this module (a model directory)."""
    run_dir = tmp_path_factory.mktemp("base")
    Runner(pool_config(**{"pool.budget": 8, "benchmark.tasks": "[colors]"}, shared=None), run_dir).run()
    return str(run_dir / "base_model")


def pool_config(selector: str = "random", shared: str | None = None, **extra: object):
    """A 3-step pool run of the tiny model; ``shared`` = a base model directory to start from."""
    values: dict[str, object] = {
        "benchmark.tasks": "[colors, counting, shapes]",
        "benchmark.eval_only": "[]",
        "benchmark.train_per_task": 40,
        "benchmark.eval_per_task": 8,
        "pool.budget": 24,
    }
    if shared is not None:
        values.update({"model.name": shared, "benchmark.base": "null"})
    values.update(extra)
    if SELECTORS.get(selector).prunes and "pool.pool_budget" not in values:
        values["pool.pool_budget"] = 50
    return load_config(None, ["scenario=pool", f"pool.selector={selector}", *tiny_overrides(**values)])


def selection_ids(run_dir, step: int) -> list[str]:
    return json.loads((run_dir / "selections" / f"step-{step:03d}.json").read_text())["ids"]


def test_pool_run_grows_the_pool_and_evaluates_skills(tmp_path, base_model):
    results = Runner(pool_config(shared=base_model), tmp_path / "run").run()
    assert results["scenario"] == "pool" and results["complete"]
    assert results["datasets"] == ["colors", "counting", "shapes"]
    assert results["skills"] == ["color", "count", "arithmetic", "shape", "code"]
    assert [row["pool_size"] for row in results["rows"]] == [40, 80, 120]
    assert [row["selected"] for row in results["rows"]] == [24, 24, 24]
    assert len(results["matrix"]) == 3 and all(len(r) == 5 for r in results["matrix"])
    assert {"final_average_accuracy", "forgetting_rate", "forgetting_rate_per_skill"} <= set(results["metrics"])
    ids = selection_ids(tmp_path / "run", 3)
    assert len(set(ids)) == 24
    # Random selection from the whole pool reaches back into datasets that joined earlier.
    assert results["rows"][2]["selected_from_newest"] < 24


def test_sequential_trains_on_the_newest_dataset_only(tmp_path, base_model):
    results = Runner(pool_config("sequential", base_model), tmp_path / "run").run()
    assert [row["selected_from_newest"] for row in results["rows"]] == [24, 24, 24]
    assert all(i.startswith(("shape-shapes", "color-shapes", "count-shapes", "code-shapes", "arithmetic-shapes"))
               for i in selection_ids(tmp_path / "run", 3))


# Small clustering settings keep the matrix fast; the defaults are tested in unit tests.
MATRIX_OPTIONS = {"lamp": "{name: lamp, dim: 512, k_grid: [2, 3, 4]}", "lite": "{name: lite, dim: 512, k_grid: [2, 3, 4]}",
                  "semdedup": "{name: semdedup, k: 4}", "density": "{name: density, k: 4}", "coincide": "{name: coincide, k: 8}"}


@pytest.mark.parametrize("selector", SELECTORS.names())
def test_every_selector_resumes_to_the_uninterrupted_result(tmp_path, base_model, selector):
    """The selector matrix: a straight run and an interrupted + resumed one choose the same ids.

    Step 2 is selected again after the resume, from the checkpointed model and pool, so equal
    ids also show that selection is deterministic for a seed.
    """
    config = pool_config(
        selector, base_model, **{"benchmark.tasks": "[colors, counting]", "benchmark.eval_per_task": 4,
                                 "pool.selector": MATRIX_OPTIONS.get(selector, selector)},
    )
    straight = Runner(config, tmp_path / "straight").run()
    assert all(len(selection_ids(tmp_path / "straight", step)) == 24 for step in (1, 2))
    if SELECTORS.get(selector).prunes:
        assert [r["pool_size_after_pruning"] for r in straight["rows"]] == [40, 50]

    def phase(description: str, total: int):
        if description.startswith("step 2/"):
            raise Interrupt(description)
        return lambda advance: None

    with pytest.raises(Interrupt):
        Runner(config, tmp_path / "resumed", Progress(phase=phase)).run()
    assert len(RunStore(tmp_path / "resumed").read_results()["rows"]) == 1
    resumed = Runner(config, tmp_path / "resumed").run()
    assert resumed["matrix"] == straight["matrix"]
    assert [r["pool_size_after_pruning"] for r in resumed["rows"]] == [r["pool_size_after_pruning"] for r in straight["rows"]]
    assert selection_ids(tmp_path / "resumed", 2) == selection_ids(tmp_path / "straight", 2)
    a, _ = RunStore(tmp_path / "straight").load_checkpoint("task-002")
    b, _ = RunStore(tmp_path / "resumed").load_checkpoint("task-002")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["scenario"] == b["scenario"] and a["scenario"]["pool"]["ids"]


def test_a_method_runs_on_top_of_selection(tmp_path, base_model):
    results = Runner(pool_config("sequential", base_model, method="[er]"), tmp_path / "run").run()
    # er replays its buffers of earlier steps on top of the 24 selected samples.
    assert results["rows"][0]["train_samples"] < results["rows"][2]["train_samples"]


def test_budget_larger_than_the_first_pool_is_refused_before_any_work(tmp_path):
    with pytest.raises(UserError, match=r"pool.budget=41 is larger than the pool at step 1 \(40 samples of 'colors'\)"):
        Runner(pool_config(**{"pool.budget": 41}), tmp_path / "run").run()
    assert not (tmp_path / "run").exists(), "nothing is written before the budget check"
