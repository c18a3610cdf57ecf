"""The embedded lifelong stream and the pool-scenario config."""

from __future__ import annotations

from collections import Counter

import pytest

from mcit.benchmarks import PoolStream, build_stream
from mcit.benchmarks.lifelong import DATASETS, DEFAULT_DATASETS, _apportion
from mcit.config import load_config
from mcit.errors import UserError
from mcit.scenarios.pool import Pool, pool_metrics
from mcit.selection import HiddenSkills


def lifelong(n: int = 200, **extra: str):
    overrides = ["scenario=pool", f"benchmark.train_per_task={n}", "benchmark.eval_per_task=4"]
    return load_config(None, overrides + [f"{k}={v}" for k, v in extra.items()])


def test_scenario_pool_alone_picks_the_lifelong_benchmark_and_defaults():
    config = lifelong()
    assert config.benchmark.name == "lifelong" and config.benchmark.tasks == DEFAULT_DATASETS
    assert config.benchmark.eval_only == [] and config.pool.selector.name == "random"
    assert load_config(None, []).benchmark.tasks == ["color", "count", "code", "shape", "caption"]


def test_stream_properties_of_the_embedded_pool():
    stream = build_stream(lifelong().benchmark, seed=0)
    assert isinstance(stream, PoolStream) and len(stream.datasets) >= 5
    skills_per_dataset = [Counter(s.skill for s in d.train) for d in stream.datasets]
    # Skewed: every dataset is dominated by one skill.
    assert all(max(c.values()) / sum(c.values()) >= 0.35 for c in skills_per_dataset)
    # A rare skill that appears in one dataset only, and only a little.
    code = [c["code"] for c in skills_per_dataset]
    assert sum(1 for n in code if n) == 1 and max(code) <= 0.06 * 200
    # A dataset introducing a new output format (two-word captions), a text-only skill.
    first_caption = next(i for i, c in enumerate(skills_per_dataset) if c["caption"])
    assert first_caption >= 2
    assert any(s.image is None for d in stream.datasets for s in d.train if s.skill == "arithmetic")
    # Near-duplicates: same text, a slightly different image.
    mixed = {s.id: s for s in stream.datasets[-1].train}
    copies = [s for s in mixed.values() if "-dup" in s.id]
    assert len(copies) == 100
    copy = next(c for c in copies if c.image is not None)
    original = next(s for d in stream.datasets for s in d.train if s.id == copy.id.rsplit("-dup", 1)[0])
    assert copy.prompt == original.prompt and copy.answer == original.answer and copy.image != original.image
    assert [t.name for t in stream.skills] == ["color", "count", "arithmetic", "shape", "code", "caption"]


def test_the_stream_is_deterministic_per_seed():
    a = build_stream(lifelong(50).benchmark, seed=1).datasets[1].train
    b = build_stream(lifelong(50).benchmark, seed=1).datasets[1].train
    c = build_stream(lifelong(50).benchmark, seed=2).datasets[1].train
    assert [s.id for s in a] == [s.id for s in b] and [s.answer for s in a] != [s.answer for s in c]


def test_apportion_sums_to_n():
    assert _apportion({"a": 0.7, "b": 0.2, "c": 0.1}, 7) == {"a": 5, "b": 1, "c": 1}
    assert sum(_apportion(DATASETS.get("shapes").mix, 33).values()) == 33


def test_selectors_do_not_see_skills():
    stream = build_stream(lifelong(20).benchmark, seed=0)
    view = HiddenSkills(stream.datasets[0].train)
    assert all(s.skill == "" for s in view) and all(s.skill for s in stream.datasets[0].train)
    assert [s.id for s in view[2:5]] == [s.id for s in stream.datasets[0].train[2:5]]


def test_pool_adds_prunes_and_round_trips():
    stream = build_stream(lifelong(10).benchmark, seed=0)
    pool = Pool(stream.datasets)
    assert list(pool.add(0)) == list(range(10)) and list(pool.add(1)) == list(range(10, 20))
    pool.keep([15, 0, 3])
    assert pool.ids == [stream.datasets[0].train[0].id, stream.datasets[0].train[3].id, stream.datasets[1].train[5].id]
    other = Pool(stream.datasets)
    other.load_state_dict(pool.state_dict())
    assert other.ids == pool.ids
    with pytest.raises(ValueError, match="ids the benchmark does not produce"):
        other.load_state_dict({"ids": ["nope"]})


def test_pool_metrics_by_hand():
    rows = [{"scores": {"a": 0.5, "b": 0.0}}, {"scores": {"a": 0.25, "b": 0.5}}, {"scores": {"a": 0.5, "b": 0.25}}]
    result = pool_metrics(["a", "b"], rows)
    assert result["final_average_accuracy"] == pytest.approx(0.375)
    assert result["average_accuracy_per_step"] == pytest.approx([0.25, 0.375, 0.375])
    # 4 (skill, step) pairs: a 0.5->0.25 (50%), a 0.25->0.5 (0), b 0.0->0.5 (0: a score of 0
    # cannot drop, and the pair still counts), b 0.5->0.25 (50%)
    assert result["forgetting_rate"] == pytest.approx(25.0)
    assert result["forgetting_rate_per_skill"] == pytest.approx({"a": 25.0, "b": 25.0})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["scenario=pool", "pool.budget=0"], "pool.budget: Input should be greater than or equal to 1"),
        (["scenario=pool", "pool.selector=lamps"], "Did you mean 'lamp'"),
        (["scenario=pool", "benchmark.name=embedded"], "benchmark 'embedded' is a task stream; set scenario: stream"),
        (["benchmark.name=lifelong"], "benchmark 'lifelong' is a data pool; set scenario: pool"),
        (["pool.budget=10"], "pool settings need scenario: pool"),
        (["scenario=pool", "pool.pool_budget=1000"], "needs a pruning selector"),
        (["scenario=pool", "pool.selector=lite"], "prunes the pool: set pool.pool_budget"),
        (["scenario=pool", "pool.selector=lite", "pool.budget=100", "pool.pool_budget=50"], "smaller than the training budget"),
        (["scenario=pool", "pool.selector={name: random, k: 3}"], "selector 'random': k: Extra inputs are not permitted"),
    ],
)
def test_bad_pool_configs_are_refused_with_one_line(overrides, message):
    with pytest.raises(UserError, match=message) as error:
        load_config(None, overrides)
    assert "\n" not in str(error.value)


def test_default_run_directory_names_the_selector():
    from pathlib import Path

    from mcit.cli import default_out

    assert default_out(load_config(None, ["scenario=pool", "pool.selector=lamp"])) == Path("runs/lifelong-lamp-seqft-seed0")
    assert default_out(load_config(None, [])) == Path("runs/embedded-seqft-seed0")
