"""LAMP selection and the baselines (the random selector's draw, SemDeDup, DBP, COINCIDE) on small pools."""

from __future__ import annotations

import numpy as np
import pytest

from mcit.selection._baselines import coincide_select, density_select, semdedup, softmax
from mcit.selection.base import uniform
from mcit.selection.lamp import lamp_select


def unit_blobs(sizes: list[int], centers: np.ndarray, noise: list[float], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Points around ``centers`` with per-blob noise, L2-normalised, and the true blob of each."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(sizes)), sizes)
    scale = np.asarray(noise)[truth][:, None]
    points = centers[truth] + scale * rng.normal(size=(len(truth), centers.shape[1]))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32), truth


def check_indices(indices: np.ndarray, expected: int, n: int) -> None:
    assert indices.dtype == np.int64
    assert len(indices) == expected
    assert np.all(np.diff(indices) > 0)  # sorted and unique
    assert indices.size == 0 or (indices[0] >= 0 and indices[-1] < n)


THREE = np.eye(16)[:3] * 3.0


# --- baselines -------------------------------------------------------------------------


@pytest.mark.parametrize("select", [semdedup, density_select, coincide_select])
@pytest.mark.parametrize("budget", [1, 137, 600, 10_000])
def test_baselines_return_exactly_the_budget_deterministically(select, budget) -> None:
    features, _ = unit_blobs([200, 200, 200], THREE, [0.3, 0.3, 0.3], seed=0)
    picked = select(features, budget, seed=3, k=6)
    check_indices(picked, min(budget, 600), 600)
    np.testing.assert_array_equal(picked, select(features, budget, seed=3, k=6))


@pytest.mark.parametrize("select", [semdedup, density_select, coincide_select])
def test_baselines_reject_bad_budget(select) -> None:
    with pytest.raises(ValueError, match="budget"):
        select(np.eye(4, dtype=np.float32), 0, seed=0)


def test_uniform_draw_of_the_random_selector() -> None:
    picked = uniform(100, 10, seed=1)
    check_indices(picked, 10, 100)
    np.testing.assert_array_equal(picked, uniform(100, 10, seed=1))
    assert not np.array_equal(picked, uniform(100, 10, seed=2))
    assert uniform(5, 10, seed=0).tolist() == [0, 1, 2, 3, 4]


def test_semdedup_removes_planted_duplicates() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(500, 32))
    planted = rng.choice(500, 100, replace=False)
    near_copies = base[planted] + 1e-4 * rng.normal(size=(100, 32))
    pool = np.concatenate([base, near_copies]).astype(np.float32)
    picked = set(semdedup(pool, 500, seed=0, k=10).tolist())
    assert len(picked) == 500
    # Of each original/copy pair exactly one survives, so all 400 singletons are kept.
    for original, copy in zip(planted, range(500, 600)):
        assert (original in picked) != (copy in picked)
    # A threshold that only catches the copies, then random fill up to the budget.
    picked_eps = semdedup(pool, 550, seed=0, k=10, eps=1e-3)
    check_indices(picked_eps, 550, 600)
    kept_pairs = sum(
        (original in picked_eps) and (copy in picked_eps) for original, copy in zip(planted, range(500, 600))
    )
    assert kept_pairs == 50  # 500 survive deduplication, 50 of the 100 dropped come back


def test_semdedup_keeps_the_copy_farther_from_the_centroid() -> None:
    rng = np.random.default_rng(4)
    points = np.eye(8)[0] * 3 + rng.normal(size=(60, 8))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    centroid = points.mean(axis=0) / np.linalg.norm(points.mean(axis=0))
    # Row 60 is row 0 nudged away from the centroid: a near-duplicate, less prototypical.
    nudged = points[0] + 0.01 * (points[0] - centroid)
    pool = np.vstack([points, nudged / np.linalg.norm(nudged)]).astype(np.float32)
    kept = semdedup(pool, 60, seed=0, k=1).tolist()
    assert 0 not in kept and 60 in kept


def test_density_select_favours_the_complex_cluster() -> None:
    # A tight and a spread cluster, the same distance apart: the spread one is more complex.
    features, truth = unit_blobs([300, 300], THREE[:2], [0.01, 0.6], seed=1)
    picked = density_select(features, 100, seed=0, k=2, temperature=0.1)
    from_spread = int((truth[picked] == 1).sum())
    assert from_spread > 80


def test_coincide_select_favours_the_sparse_cluster() -> None:
    # Two clusters 60 degrees apart share transitivity T = cos 60; the sparser (lower
    # density) one has the larger T / D and gets the bigger share.
    centers = np.array([[1.0, 0.0, 0.0, 0.0], [0.5, np.sqrt(3) / 2, 0.0, 0.0]]) * 3
    features, truth = unit_blobs([300, 300], centers, [0.05, 0.8], seed=2)
    picked = coincide_select(features, 100, seed=0, k=2, temperature=0.1)
    from_sparse = int((truth[picked] == 1).sum())
    # The same split computed by brute force from the definitions.
    directions = [features[truth == c].mean(axis=0) for c in (0, 1)]
    directions = [d / np.linalg.norm(d) for d in directions]
    density = [float((features[truth == c] @ directions[c]).mean()) for c in (0, 1)]
    transitivity = float(directions[0] @ directions[1])
    ratio = np.array([transitivity / density[0], transitivity / density[1]]) / 0.1
    share = np.exp(ratio - ratio.max())
    expected_sparse = 100 * share[1] / share.sum()
    assert from_sparse > 55 and abs(from_sparse - expected_sparse) <= 1


def test_softmax() -> None:
    np.testing.assert_allclose(softmax(np.array([0.0, np.log(3.0)]), 1.0), [0.25, 0.75])
    assert softmax(np.array([1e6, 0.0]), 0.01)[0] == 1.0  # no overflow
    with pytest.raises(ValueError):
        softmax(np.zeros(2), 0.0)


# --- LAMP ------------------------------------------------------------------------------


def lamp_pool(seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    features, truth = unit_blobs([150, 250, 400], THREE, [0.2, 0.2, 0.2], seed=seed)
    rng = np.random.default_rng(seed)
    scores = {"ppl": rng.normal(size=800), "el2n": rng.uniform(size=800), "ig": rng.normal(size=800)}
    scores["ig"][rng.uniform(size=800) < 0.2] = np.nan
    return features, scores, truth


@pytest.mark.parametrize("budget_rule", ["even", "density"])
def test_lamp_select_invariants(budget_rule) -> None:
    features, scores, truth = lamp_pool()
    selection = lamp_select(features, scores, 300, seed=0, k_grid=(2, 3, 4, 6, 8), budget_rule=budget_rule)
    check_indices(selection.indices, 300, 800)
    assert selection.k == 3  # the three blobs
    assert len({(t, label) for t, label in zip(truth, selection.labels)}) == 3
    np.testing.assert_array_equal(selection.cluster_of_index, selection.labels[selection.indices])
    assert selection.cluster_sizes == np.bincount(selection.labels, minlength=3).tolist()
    per_cluster = np.bincount(selection.cluster_of_index, minlength=3).tolist()
    assert per_cluster == selection.cluster_budgets and sum(per_cluster) == 300
    assert set(selection.chosen_score) == {0, 1, 2}
    assert set(selection.chosen_score.values()) <= set(scores)
    assert sorted(selection.wss_by_k) == [2, 3, 4, 6, 8]
    if budget_rule == "even":
        assert sorted(selection.cluster_budgets) == [100, 100, 100]
    assert selection.summary()["selected"] == 300


def test_lamp_select_is_deterministic_for_a_seed() -> None:
    features, scores, _ = lamp_pool()
    first = lamp_select(features, scores, 200, seed=5, k_grid=(2, 3, 4))
    second = lamp_select(features, scores, 200, seed=5, k_grid=(2, 3, 4))
    np.testing.assert_array_equal(first.indices, second.indices)
    np.testing.assert_array_equal(first.labels, second.labels)
    other = lamp_select(features, scores, 200, seed=6, k_grid=(2, 3, 4))
    assert not np.array_equal(first.indices, other.indices)


def test_lamp_select_even_split_takes_small_cluster_whole() -> None:
    features, scores, _ = lamp_pool()
    selection = lamp_select(features, scores, 600, seed=0, k_grid=(3,))
    # share 200: the 150-row blob is taken whole, the other two get 225 each
    budgets_by_size = dict(zip(selection.cluster_sizes, selection.cluster_budgets))
    assert budgets_by_size == {150: 150, 250: 225, 400: 225}


def test_lamp_select_uses_each_clusters_most_spread_score() -> None:
    features, _, truth = lamp_pool()
    rng = np.random.default_rng(1)
    # "a" varies only in blob 0 and "b" only in blobs 1 and 2; elsewhere each is constant.
    a = np.where(truth == 0, rng.uniform(size=800), 0.5)
    b = np.where(truth == 0, 0.5, rng.uniform(size=800))
    selection = lamp_select(features, {"a": a, "b": b}, 90, seed=0, k_grid=(3,))
    for label, name in selection.chosen_score.items():
        blob = np.bincount(truth[selection.labels == label]).argmax()
        assert name == ("a" if blob == 0 else "b")


def test_lamp_select_clusters_a_projection_as_it_would_the_full_vectors() -> None:
    # 2048-d vectors like the lifelong config's: k-means on the 256-d projection (the default)
    # finds the same pseudo-tasks, and so the same budgets, as on the full width.
    rng = np.random.default_rng(3)
    features, truth = unit_blobs([200, 300, 250, 150], rng.normal(size=(4, 2048)), [0.6] * 4, seed=3)
    scores = {"ppl": rng.normal(size=900), "el2n": rng.uniform(size=900)}
    projected = lamp_select(features, scores, 200, seed=0, k_grid=(2, 3, 4, 6, 8))
    full = lamp_select(features, scores, 200, seed=0, k_grid=(2, 3, 4, 6, 8), cluster_dim=None, k_search_restarts=3)
    assert projected.k == full.k == 4
    assert len({(t, label) for t, label in zip(truth, projected.labels)}) == 4
    assert sorted(projected.cluster_sizes) == sorted(full.cluster_sizes) == [150, 200, 250, 300]
    assert sorted(projected.cluster_budgets) == sorted(full.cluster_budgets) == [50, 50, 50, 50]


def test_lamp_select_whole_pool_and_errors() -> None:
    features, scores, _ = lamp_pool()
    assert lamp_select(features, scores, 5000, seed=0, k_grid=(3,)).indices.tolist() == list(range(800))
    with pytest.raises(ValueError, match="budget"):
        lamp_select(features, scores, 0, seed=0)
    with pytest.raises(ValueError, match="at least one score"):
        lamp_select(features, {}, 10, seed=0)
    with pytest.raises(ValueError, match="'ppl' has 799 values"):
        lamp_select(features, {"ppl": scores["ppl"][:-1]}, 10, seed=0)
    with pytest.raises(ValueError, match="budget rule"):
        lamp_select(features, scores, 10, seed=0, budget_rule="size")
