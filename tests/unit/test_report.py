"""Terminal report helpers: the zero-shot sanity check and the metrics table."""

from __future__ import annotations

import io
import re

from mcit.report import metrics_table, zero_shot_notes


def results(zero_shot: dict, diagonal: dict) -> dict:
    rows = [{"after": task, "scores": {task: score}} for task, score in diagonal.items()]
    return {"scenario": "stream", "zero_shot": zero_shot, "rows": rows}


def test_flags_tasks_the_model_could_already_do():
    notes = zero_shot_notes(results({"a": 0.0, "b": 0.85, "c": 0.95}, {"a": 1.0, "b": 0.9, "c": 0.5}))
    assert len(notes) == 2
    assert notes[0].startswith("task 'b': zero-shot 85.0 is already 94.4% of its score after training (90.0)")
    assert notes[1].startswith("task 'c': zero-shot 95.0")


def test_nothing_to_flag_when_training_taught_the_task():
    assert zero_shot_notes(results({"a": 0.1, "b": 0.79}, {"a": 1.0, "b": 0.9})) == []
    assert zero_shot_notes(results({"a": 0.0}, {"a": 0.0})) == []  # nothing learnt: not a leak
    assert zero_shot_notes({"scenario": "pool", "zero_shot": {"a": 1.0}, "rows": []}) == []


def printed(table) -> str:
    from rich.console import Console

    console = Console(width=120, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text()


def test_metrics_table_prints_the_nlu_nlg_and_vl_deltas_in_points():
    results = {
        "scenario": "stream", "rows": [{"after": "a", "scores": {}, "train_seconds": 1.0, "eval_seconds": 1.0}],
        "metrics": {"backward_transfer": -0.25},
        "language": {"compare": {"zero_shot": 1.0, "current": 0.5, "forgetting": 0.5}},
        "linguistic_forgetting": {
            "nlu": {"tasks": ["compare", "choice"], "zero_shot": 1.0, "current": 0.4, "forgetting": 0.6, "by_step": [0.6]},
            "nlg": {"tasks": ["arithmetic"], "zero_shot": 0.9, "current": 0.9, "forgetting": 0.0, "by_step": [0.0]},
        },
        "vision_language_forgetting": {"tasks": ["a"], "forgetting": 0.25, "by_step": [0.25]},
    }
    text = printed(metrics_table(results))
    assert re.search(r"NLU Delta vs zero-shot \(compare, choice\)\s*│\s*60\.0", text), text
    assert re.search(r"NLG Delta vs zero-shot \(arithmetic\)\s*│\s*0\.0", text), text
    assert re.search(r"VL Delta \(each task vs just after it\)\s*│\s*25\.0", text), text
    assert re.search(r"compare\* forgetting vs zero-shot\s*│\s*50\.0", text), text


def test_metrics_table_of_a_run_from_before_the_deltas_has_no_delta_rows():
    results = {"scenario": "stream", "rows": [], "metrics": {}, "language": {}}
    assert "Delta" not in printed(metrics_table(results))


def test_a_lower_triangle_shows_dashes_and_each_metric_its_convention_or_why_unavailable():
    from mcit import metrics
    from mcit.report import matrix_table

    scores = [{"a": 0.8, "b": None}, {"a": 0.6, "b": 0.9}]  # b not evaluated before its training
    summary = metrics.summarize([[s["a"], s["b"]] for s in scores], [0.1, 0.2], [1, 1])
    results = {
        "scenario": "stream", "tasks": ["a", "b"], "eval_only": [], "zero_shot": {"a": 0.1, "b": 0.2},
        "rows": [{"after": t, "scores": s, "train_seconds": 1.0, "eval_seconds": 1.0} for t, s in zip("ab", scores)],
        "metrics": summary.values, "metric_conventions": summary.conventions, "metrics_unavailable": summary.unavailable,
    }
    matrix = printed(matrix_table(results))
    assert re.search(r"│ a\s*│\s*80\.0 │\s*- │", matrix), matrix
    text = printed(metrics_table(results))
    # forgetting from a's own training: 0.8 - 0.6; CoIN++ the same (the final row is not a's best)
    assert re.search(r"average_forgetting\s*│\s*20\.0 │ forgetting from the task's own training on", text), text
    assert re.search(r"average_forgetting_coinpp\s*│\s*20\.0 │ CoIN\+\+", text), text
    assert re.search(r"forward_transfer\s*│\s*- │ unavailable: needs each task's score before its own training", text), text


def test_metrics_table_of_a_pool_run_counts_selection_in_the_stream_time_and_shows_it_apart():
    rows = [
        {"after": "d1", "scores": {}, "train_seconds": 10.0, "eval_seconds": 2.0, "selection_seconds": 5.0, "prune_seconds": 1.0},
        {"after": "d2", "scores": {}, "train_seconds": 20.0, "eval_seconds": 3.0, "selection_seconds": 7.0, "prune_seconds": 0.0},
    ]
    text = printed(metrics_table({"scenario": "pool", "rows": rows, "metrics": {}}))
    assert re.search(r"stream wall time \(s\)\s*│\s*48\.0", text), text
    assert re.search(r"training \(s\)\s*│\s*30\.0", text), text
    assert re.search(r"evaluation \(s\)\s*│\s*5\.0", text), text
    assert re.search(r"selection \(s\)\s*│\s*13\.0", text), text
    stream = printed(metrics_table({"scenario": "stream", "rows": [{**rows[0], "selection_seconds": 0.0}], "metrics": {}}))
    assert "selection" not in stream and re.search(r"stream wall time \(s\)\s*│\s*12\.0", stream), stream
