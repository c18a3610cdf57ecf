"""Terminal report helpers: the zero-shot sanity check."""

from __future__ import annotations

from mcit.report import zero_shot_notes


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
