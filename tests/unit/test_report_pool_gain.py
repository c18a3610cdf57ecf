"""LAMP's relative gain in ``mcit report``: each pool run against the sequential run of its seed and datasets."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from mcit.report import write_report
from mcit.report.groups import SweepCell, group_table
from mcit.report.pool_gain import add_relative_gains
from mcit.report.runs import load_runs


def pool_run(directory, selector: str, scores: list[dict[str, float]], seed: int = 0, methods=("seqft",),
             datasets=("d1", "d2", "d3"), complete: bool = True):  # fmt: skip
    directory.mkdir(parents=True)
    results = {
        "scenario": "pool", "datasets": list(datasets), "skills": ["s1", "s2"], "methods": list(methods),
        "complete": complete, "zero_shot": {"s1": 0.0, "s2": 0.0},
        "rows": [{"after": d, "scores": s} for d, s in zip(datasets, scores)],
        "metrics": {"final_average_accuracy": sum(scores[-1].values()) / 2, "forgetting_rate": 1.0},
    }
    (directory / "results.json").write_text(json.dumps(results), encoding="utf-8")
    config = {"seed": seed, "scenario": "pool", "pool": {"selector": {"name": selector}}}
    (directory / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return directory


SEQUENTIAL = [{"s1": 0.8, "s2": 0.2}, {"s1": 0.4, "s2": 0.5}, {"s1": 0.2, "s2": 0.4}]  # best: s1 0.8, s2 0.5
LAMP = [{"s1": 0.6, "s2": 0.3}, {"s1": 0.7, "s2": 0.5}, {"s1": 0.6, "s2": 0.45}]


def gains(tmp_path, *dirs) -> dict[str, float | None]:
    runs = load_runs(list(dirs))
    add_relative_gains(runs)
    return {run.name: run.results["metrics"].get("relative_gain") for run in runs}


def test_relative_gain_against_the_best_scores_of_the_sequential_run(tmp_path):
    sequential = pool_run(tmp_path / "sequential", "sequential", SEQUENTIAL)
    lamp = pool_run(tmp_path / "lamp", "lamp", LAMP)
    result = gains(tmp_path, sequential, lamp)
    assert result["lamp"] == pytest.approx((0.6 / 0.8 + 0.45 / 0.5) / 2)  # 82.5%
    assert result["sequential"] == pytest.approx((0.2 / 0.8 + 0.4 / 0.5) / 2)
    page = write_report([sequential, lamp], tmp_path / "report")
    with open(page.parent / "comparison.csv", encoding="utf-8", newline="") as f:
        rows = {row["run"]: row for row in csv.DictReader(f)}
    assert rows["lamp"]["relative_gain"] == "82.5" and rows["sequential"]["relative_gain"] == "52.5"
    assert "relative gain (%)" in page.read_text(encoding="utf-8")


def test_no_gain_without_a_matching_sequential_run(tmp_path):
    lamp = pool_run(tmp_path / "lamp", "lamp", LAMP)
    other_seed = pool_run(tmp_path / "sequential-seed1", "sequential", SEQUENTIAL, seed=1)
    other_order = pool_run(tmp_path / "sequential-order", "sequential", SEQUENTIAL, datasets=("d2", "d1", "d3"))
    replay = pool_run(tmp_path / "sequential-er", "sequential", SEQUENTIAL, methods=("er",))
    unfinished = pool_run(tmp_path / "sequential-unfinished", "sequential", SEQUENTIAL, complete=False)
    assert gains(tmp_path, lamp, other_seed, other_order, replay, unfinished)["lamp"] is None
    page = write_report([lamp], tmp_path / "report")
    with open(page.parent / "comparison.csv", encoding="utf-8", newline="") as f:
        assert "relative_gain" not in next(csv.DictReader(f))


def test_a_skill_the_sequential_run_never_learned_is_left_out_and_named(tmp_path):
    zero = [{"s1": 0.8, "s2": 0.0}, {"s1": 0.4, "s2": 0.0}, {"s1": 0.2, "s2": 0.0}]
    sequential = pool_run(tmp_path / "sequential", "sequential", zero)
    lamp = pool_run(tmp_path / "lamp", "lamp", LAMP)
    runs = load_runs([sequential, lamp])
    add_relative_gains(runs)
    assert runs[1].results["metrics"]["relative_gain"] == pytest.approx(0.6 / 0.8)
    assert runs[1].results["metrics"]["relative_gain_skipped"] == ["s2"]


def test_the_group_table_has_the_gain_over_seeds(tmp_path):
    dirs, cells = [], []
    for seed, final in ((0, 0.6), (1, 0.4)):
        sequential = pool_run(tmp_path / f"seed{seed}/seqft", "sequential", SEQUENTIAL, seed=seed)
        er = pool_run(tmp_path / f"seed{seed}/er", "sequential", [*LAMP[:2], {"s1": final, "s2": 0.45}], seed=seed,
                      methods=("er",))  # fmt: skip
        dirs += [sequential, er]
        cells += [SweepCell("seqft", seed, 0, sequential), SweepCell("er", seed, 0, er)]
    runs = load_runs(dirs, [f"{c.group}-{c.seed}" for c in cells])
    add_relative_gains(runs)
    table = group_table([(cell, run.results) for cell, run in zip(cells, runs)])
    row = next(r for r in table.rows if r["method"] == "er" and r["metric"] == "relative gain (%)")
    expected = [(0.6 / 0.8 + 0.9) / 2 * 100, (0.4 / 0.8 + 0.9) / 2 * 100]
    assert row["n_seeds"] == 2 and row["mean_over_seeds"] == pytest.approx(sum(expected) / 2)
    rate = next(r for r in table.rows if r["method"] == "er" and r["metric"] == "forgetting rate (%)")
    assert rate["mean_over_seeds"] == pytest.approx(1.0)
