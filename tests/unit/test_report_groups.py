"""The group table of sweep cells: mean and 95% Student-t interval over seeds and over orders, by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mcit.report.groups import SweepCell, estimate, expand, group_table, spread

T_975_1 = 12.706204736174698  # Student t quantile 0.975, 1 degree of freedom
T_975_2 = 4.302652729749464  # 2 degrees of freedom


def results(final: float, nlu: float | None = None, complete: bool = True) -> dict:
    fabricated = {
        "complete": complete,
        "metrics": {"final_average_accuracy": final, "average_forgetting": 0.1, "backward_transfer": None},
    }
    if nlu is not None:
        fabricated["linguistic_forgetting"] = {"nlu": {"forgetting": nlu}}
    return fabricated


# method "a": 3 seeds x 2 orders of final average accuracy; the NLU Delta in two cells.
FINAL = {(0, 0): 0.50, (0, 1): 0.60, (1, 0): 0.40, (1, 1): 0.60, (2, 0): 0.70, (2, 1): 0.80}


def cells() -> list[tuple[SweepCell, dict]]:
    made = [
        (SweepCell("a", seed, order, Path(f"seed{seed}/order{order}/a")), results(value, nlu=0.02 * (seed + 1) if order == 0 and seed < 2 else None))
        for (seed, order), value in FINAL.items()
    ]
    made.append((SweepCell("a", 3, 0, Path("seed3/order0/a")), results(0.99, complete=False)))  # unfinished: left out
    made.append((SweepCell("b", 0, 0, Path("seed0/order0/b")), results(0.30)))
    return made


def row(table, method: str, metric: str) -> dict:
    return next(r for r in table.rows if r["method"] == method and r["metric"] == metric)


def test_mean_and_interval_over_seeds_and_orders_match_a_hand_computation():
    table = group_table(cells())
    final = row(table, "a", "final avg acc")
    assert final["cells"] == "6/7"
    # Over seeds: each seed's mean over its orders, 55, 50, 75 points -> mean 60, s = sqrt((25 + 100 + 225) / 2).
    assert final["n_seeds"] == 3 and final["mean_over_seeds"] == pytest.approx(60.0)
    assert final["ci95_over_seeds"] == pytest.approx(T_975_2 * math.sqrt(175.0) / math.sqrt(3))
    # Over orders: each order's mean over seeds, 160/3 and 200/3 points -> mean 60, s = (40/3) / sqrt(2).
    assert final["n_orders"] == 2 and final["mean_over_orders"] == pytest.approx(60.0)
    assert final["ci95_over_orders"] == pytest.approx(T_975_1 * (40 / 3) / math.sqrt(2) / math.sqrt(2))


def test_one_value_gives_a_mean_and_no_interval():
    table = group_table(cells())
    single = row(table, "b", "final avg acc")
    assert single["mean_over_seeds"] == pytest.approx(30.0) and single["ci95_over_seeds"] is None and single["n_seeds"] == 1
    assert spread(single, "seeds") == "30.0 (n=1: no interval)"
    assert spread(row(table, "a", "final avg acc"), "seeds") == f"60.0 ± {T_975_2 * math.sqrt(175.0 / 3):.1f} (n=3)"
    assert estimate([]).n == 0 and estimate([]).mean is None


def test_deltas_appear_when_present_and_undefined_metrics_stay_empty():
    table = group_table(cells())
    assert {r["metric"] for r in table.rows} == {"final avg acc", "avg forgetting (from own training)", "BWT", "NLU Delta"}
    nlu = row(table, "a", "NLU Delta")
    assert nlu["n_seeds"] == 2 and nlu["mean_over_seeds"] == pytest.approx(3.0)
    assert nlu["n_orders"] == 1 and nlu["ci95_over_orders"] is None
    bwt = row(table, "a", "BWT")
    assert bwt["n_seeds"] == 0 and bwt["mean_over_seeds"] is None and spread(bwt, "seeds") == "-"


def test_a_sweep_directory_expands_to_its_cells_with_results(tmp_path):
    sweep = tmp_path / "grid"
    entries = [{"method": "a", "seed": s, "order": 0, "path": f"seed{s}/order0/a"} for s in (0, 1)]
    sweep.mkdir()
    (sweep / "sweep.json").write_text(json.dumps({"format": 1, "grid": {}, "cells": entries}), encoding="utf-8")
    (sweep / "seed0/order0/a").mkdir(parents=True)
    (sweep / "seed0/order0/a/results.json").write_text(json.dumps(results(0.5)), encoding="utf-8")
    plain = tmp_path / "plain"
    expanded = expand([sweep, plain])
    assert expanded.run_dirs == [sweep / "seed0/order0/a", plain]
    assert expanded.names == ["seed0/order0/a", "plain"]
    assert list(expanded.cells) == [0] and expanded.cells[0].group == "a"
    assert [cell.seed for cell in expanded.not_started] == [1]


def test_each_eval_only_tasks_forgetting_has_its_group_rows():
    made = [
        (SweepCell("a", seed, 0, Path(f"seed{seed}/order0/a")), {**results(0.5), "language": {"arithmetic": {"forgetting": value}}})
        for seed, value in ((0, 0.25), (1, 0.75))
    ]
    arithmetic = row(group_table(made), "a", "arithmetic* forgetting")
    assert arithmetic["n_seeds"] == 2 and arithmetic["mean_over_seeds"] == pytest.approx(50.0)
    assert "arithmetic* forgetting" not in {r["metric"] for r in group_table(cells()).rows}, "only where some cell has it"


def test_groups_csv_and_the_page_round_float_noise_alike(tmp_path):
    from mcit.report.tables import write_csv

    # Three identical values: their interval is float noise (here 4.5e-14), which must read 0.0 everywhere.
    made = [(SweepCell("a", seed, 0, Path(f"seed{seed}/order0/a")), results(0.1 + 0.2)) for seed in range(3)]
    table = group_table(made)
    final = row(table, "a", "final avg acc")
    final["ci95_over_seeds"] = 4.5e-14  # what the interval of identical values came out as
    final["mean_over_orders"] = -4.5e-14
    write_csv(table, tmp_path / "groups.csv")
    header, *rows = (tmp_path / "groups.csv").read_text().splitlines()
    written = dict(zip(header.split(","), next(r for r in rows if "final avg acc" in r).split(",")))
    assert written["ci95_over_seeds"] == "0.0" and written["mean_over_orders"] == "0.0"
    assert written["mean_over_seeds"] == "30.0"  # 100 * (0.1 + 0.2) = 30.000000000000004
    page = dict(zip([c.key for c in table.columns], table.cells()[table.rows.index(final)]))
    assert page["ci95_over_seeds"] == "0.0" and page["mean_over_orders"] == "0.0"
    assert spread({**final, "mean_over_orders": -4.5e-14}, "orders") == "0.0 (n=1: no interval)"
