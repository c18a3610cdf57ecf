"""Streams are validated before any training: an empty task is a one-line user error."""

import pytest

from mcit.benchmarks import BENCHMARKS, Stream, build_stream
from mcit.benchmarks.base import validate_stream
from mcit.config import load_config
from mcit.data.sample import Sample, Task
from mcit.errors import UserError


def sample(i: int) -> Sample:
    return Sample(f"s{i}", "What is 1 plus 1?", "2")


def test_embedded_stream_has_the_configured_tasks_and_sizes():
    config = load_config(None, ["benchmark.train_per_task=5", "benchmark.eval_per_task=3"])
    stream = build_stream(config.benchmark, seed=0)
    assert [t.name for t in stream.tasks] == config.benchmark.tasks
    assert [t.name for t in stream.eval_only] == ["arithmetic"]
    assert all(len(t.train) == 5 and len(t.eval) == 3 for t in stream.tasks)
    assert stream.eval_only[0].train == []
    assert len(stream.base_train) == 2 * config.benchmark.base.samples_per_task


def test_task_without_training_samples_is_refused():
    stream = Stream([Task("a", [sample(0)], [sample(1)]), Task("b", [], [sample(2)])], [], None, [])
    with pytest.raises(UserError, match=r"benchmark 'x': task 'b' has no training samples"):
        validate_stream(stream, "x")


def test_task_without_evaluation_samples_is_refused():
    stream = Stream([Task("a", [sample(0)], [sample(1)])], [Task("lang", [], [])], None, [])
    with pytest.raises(UserError, match=r"task 'lang' has no evaluation samples"):
        validate_stream(stream, "x")


def test_build_stream_validates_what_a_benchmark_returns(monkeypatch):
    config = load_config(None, [])
    monkeypatch.setitem(BENCHMARKS._items, "embedded", lambda config, seed: Stream([Task("t", [], [sample(0)])], [], None, []))
    with pytest.raises(UserError, match="no training samples"):
        build_stream(config.benchmark, 0)
