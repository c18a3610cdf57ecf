"""``eval.seen_tasks_only``: a tiny stream evaluated as the field reports it, the lower triangle."""

from __future__ import annotations

import json

import pytest

from mcit import metrics
from mcit.errors import UserError
from mcit.runner import Runner


def test_seen_tasks_only_evaluates_the_lower_triangle_and_reports_fwt_unavailable(tmp_path, tiny_config):
    results = Runner(tiny_config(**{"eval.seen_tasks_only": "true"}), tmp_path / "run").run()

    # Columns: color, count (trained in that order), arithmetic (eval-only, measured after every task).
    first, last = results["matrix"]
    assert first[1] is None, "count is not evaluated before its own training"
    assert first[0] is not None and first[2] is not None and all(v is not None for v in last)
    assert set(results["zero_shot"]) == {"color", "count", "arithmetic"}, "the zero-shot row stays complete"
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["matrix"][0][1] is None and on_disk["rows"][0]["scores"]["count"] is None
    evaluated = json.loads((tmp_path / "run" / "evaluations" / "01-color.json").read_text())
    assert set(evaluated) == {"color", "arithmetic"}, "the skipped column costs no generation"

    square = [row[:2] for row in results["matrix"]]
    assert results["metrics"]["forward_transfer"] is None
    assert results["metrics_unavailable"] == {
        "forward_transfer": "needs each task's score before its own training (the cells just above the diagonal); "
        "1 of those cells were not evaluated (first: after task 1, on task 2)"
    }
    assert results["metrics"]["average_forgetting"] == pytest.approx(square[0][0] - square[1][0])
    assert results["metrics"]["final_average_accuracy"] == pytest.approx(metrics.final_average_accuracy(square))
    assert results["metric_conventions"] == metrics.CONVENTIONS
    assert results["vision_language_forgetting"]["forgetting"] == pytest.approx(square[0][0] - square[1][0])


def test_seen_tasks_only_is_refused_for_the_pool_scenario():
    from mcit.config import load_config

    with pytest.raises(UserError, match="eval.seen_tasks_only is for the stream scenario"):
        load_config(None, ["scenario=pool", "eval.seen_tasks_only=true"])
