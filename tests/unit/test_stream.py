"""Streams are validated before any training: an empty task is a one-line user error."""

import pytest

from mcit.benchmarks import BENCHMARKS, Benchmark, Stream, build_stream
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
    assert [t.name for t in stream.eval_only] == ["compare", "choice", "arithmetic", "reverse", "plural"]
    assert [t.language_kind for t in stream.eval_only] == ["nlu", "nlu", "nlg", "nlg", "nlg"]
    assert all(t.language_kind is None for t in stream.tasks)
    assert all(len(t.train) == 5 and len(t.eval) == 3 for t in stream.tasks)
    assert all(t.train == [] for t in stream.eval_only)
    assert len(stream.base_train) == 6000 == sum(config.benchmark.base.samples_per_task.values())
    assert {s.skill for s in stream.base_train} == set(config.benchmark.base.tasks)


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
    empty = Benchmark(lambda config, seed: Stream([Task("t", [], [sample(0)])], [], None, []), "stream", ["t"])
    monkeypatch.setitem(BENCHMARKS._items, "embedded", empty)
    with pytest.raises(UserError, match="no training samples"):
        build_stream(config.benchmark, 0)


def test_a_sample_id_twice_in_one_task_is_refused():
    stream = Stream([Task("a", [sample(0), sample(0)], [sample(1)])], [], None, [])
    with pytest.raises(UserError, match=r"sample id 's0' occurs more than once in one task"):
        validate_stream(stream, "x")


def test_the_same_id_in_two_tasks_of_a_stream_is_fine():
    stream = Stream([Task("a", [sample(0)], [sample(1)]), Task("b", [sample(0)], [sample(1)])], [], None, [])
    validate_stream(stream, "x")  # buffers refer to samples by task and id


def test_unknown_task_names_are_refused_by_the_config_before_any_data_is_built(monkeypatch):
    def no_build(config, seed):
        raise AssertionError("data built before the names were checked")

    names = BENCHMARKS.get("embedded").task_names
    guarded = Benchmark(no_build, "stream", ["color"], [], task_names=names, eval_names=names, base_names=names)
    monkeypatch.setitem(BENCHMARKS._items, "embedded", guarded)
    for override, name in (("benchmark.tasks=[color, colr]", "colr"), ("benchmark.eval_only=[arithmetc]", "arithmetc"),
                           ("benchmark.base.tasks=[describ]", "describ")):
        with pytest.raises(UserError, match=rf"Unknown embedded task '{name}'"):
            load_config(None, [override])
