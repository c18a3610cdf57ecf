"""The open-answer lifelong world: the closed world's structure with skills whose answers take many values."""

from __future__ import annotations

from collections import Counter

from mcit.benchmarks import build_stream
from mcit.benchmarks.lifelong import OPEN_DATASETS
from mcit.config import load_config


def open_world(n: int = 200):
    overrides = ["scenario=pool", f"benchmark.tasks={OPEN_DATASETS}", f"benchmark.train_per_task={n}", "benchmark.eval_per_task=4"]
    return build_stream(load_config(None, overrides).benchmark, seed=0)


def test_the_open_world_has_the_closed_worlds_structure():
    stream = open_world()
    counts = [Counter(s.skill for s in d.train) for d in stream.datasets]
    assert len(stream.datasets) == 5
    assert all(max(c.values()) / sum(c.values()) >= 0.35 for c in counts)  # skewed
    plural = [c["plural"] for c in counts]
    assert sum(1 for n in plural if n) == 1 and max(plural) <= 0.06 * 200  # the rare skill
    assert any(s.image is None for d in stream.datasets for s in d.train if s.skill == "arithmetic")
    assert sum("-dup" in s.id for s in stream.datasets[-1].train) == 100  # near-duplicates
    assert [t.name for t in stream.skills] == ["describe", "caption", "arithmetic", "reverse", "plural"]


def test_its_skills_answer_with_strings_of_many_values():
    stream = open_world(400)
    answers: dict[str, set[str]] = {}
    for dataset in stream.datasets:
        for sample in dataset.train:
            if "-dup" not in sample.id:
                answers.setdefault(sample.skill, set()).add(sample.answer)
    assert all(len(values) >= 10 for skill, values in answers.items() if skill != "plural"), {k: len(v) for k, v in answers.items()}
    assert min(len(a.split()) for a in answers["describe"]) == 5 and min(len(a.split()) for a in answers["caption"]) == 2
