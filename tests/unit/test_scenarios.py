"""Scenarios: what each step trains on and evaluates, sample lookups, and a third scenario."""

from __future__ import annotations

import pytest

from conftest import tiny_overrides
from mcit.config import load_config
from mcit.errors import UserError
from mcit.runner import Runner
from mcit.scenarios import SCENARIOS, StepData, build_scenario
from mcit.scenarios.stream import StreamScenario
from mcit.selection import SelectionContext


def context() -> SelectionContext:
    return SelectionContext(None, None, "cpu", 0)


def test_stream_steps_columns_and_data():
    scenario = build_scenario(load_config(None, tiny_overrides()))
    assert scenario.steps == ["color", "count"]
    assert [task.name for task in scenario.columns] == ["color", "count", "arithmetic"]
    step = scenario.begin(1, context())
    assert step.name == "count" and step.train is scenario.data.tasks[1].train
    assert scenario.header()["tasks"] == ["color", "count"] and scenario.header()["eval_only"] == ["arithmetic"]


def test_stream_lookup_reads_reached_tasks_only():
    scenario = build_scenario(load_config(None, tiny_overrides()))
    first, second = scenario.data.tasks
    assert scenario.lookup(1)("color", first.train[3].id) is first.train[3]
    assert scenario.lookup(1)("count", second.train[0].id) is second.train[0]
    with pytest.raises(KeyError, match="not among the tasks reached"):
        scenario.lookup(0)("count", second.train[0].id)  # a future task's data is not reachable
    with pytest.raises(KeyError):
        scenario.lookup(1)("color", "no-such-id")


def test_pool_lookup_reads_datasets_that_had_joined_by_that_step():
    config = load_config(None, ["scenario=pool", "benchmark.tasks=[colors, counting]", "benchmark.train_per_task=20",
                                "benchmark.eval_per_task=4", "pool.budget=10"])
    scenario = build_scenario(config)
    colors, counting = scenario.data.datasets
    assert scenario.lookup(1)("counting", colors.train[0].id) is colors.train[0]  # an old dataset, still in the pool
    with pytest.raises(KeyError, match="not in the pool of step 'colors'"):
        scenario.lookup(1)("colors", counting.train[0].id)  # had not joined at step 1
    with pytest.raises(KeyError, match="not in the pool"):
        scenario.lookup(0)("counting", counting.train[0].id)  # the run has not reached step 2
    with pytest.raises(KeyError, match="not a step"):
        scenario.lookup(1)("nowhere", colors.train[0].id)


def test_pool_budget_check_needs_no_model():
    config = load_config(None, ["scenario=pool", "benchmark.train_per_task=20", "benchmark.eval_per_task=4", "pool.budget=21"])
    with pytest.raises(UserError, match=r"pool.budget=21 is larger than the pool at step 1 \(20 samples"):
        build_scenario(config).check()


class ReversedStream(StreamScenario):
    """A third scenario: the stream's tasks in reverse order. Nothing else is needed to run it."""

    kind = "reversed"

    @property
    def steps(self) -> list[str]:
        return super().steps[::-1]

    def header(self):
        return {**super().header(), "tasks": self.steps}

    def lookup(self, reached: int):
        return super().lookup(len(self.steps) - 1)  # every task has been reached from the start

    def begin(self, index: int, selection) -> StepData:
        task = self.data.tasks[len(self.steps) - 1 - index]
        return StepData(task.name, task.train)


def test_a_third_scenario_runs_through_the_runner_unchanged(tmp_path, monkeypatch):
    monkeypatch.setitem(SCENARIOS._items, "reversed", ReversedStream)
    config = load_config(None, ["scenario=reversed", *tiny_overrides(method="[er]")])
    results = Runner(config, tmp_path / "run").run()
    assert results["scenario"] == "reversed" and [row["after"] for row in results["rows"]] == ["count", "color"]
    assert results["rows"][1]["train_samples"] > results["rows"][0]["train_samples"], "er replayed count during color"
    assert set(results["metrics"]) >= {"final_average_accuracy", "average_forgetting"}
