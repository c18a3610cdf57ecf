"""Array-side selection building blocks: feature store, budgets, CCS, score choice, k-means, redundancy.

Hand-computed cases pin the exact behaviour; property tests check the invariants.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcit.selection._budget import split_budget, split_budget_weighted
from mcit.selection._ccs import ccs_sample, trim_by_rank
from mcit.selection._clustering import assign, choose_k, cluster_cosine_stats, elbow_k, kmeans, search_projection
from mcit.selection._featurestore import FeatureStore, in_memory_or_store, sidecar_path
from mcit.selection._multiway import choose_score, histogram_entropy
from mcit.selection._prune import lite_prune, max_cosine_to_earlier


def blobs(n_per: int, centers: np.ndarray, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(centers)), n_per)
    points = centers[truth] + noise * rng.normal(size=(len(truth), centers.shape[1]))
    return points.astype(np.float32), truth


# --- feature store ---------------------------------------------------------------------


def test_feature_store_round_trip_out_of_order(tmp_path) -> None:
    data = np.arange(30, dtype=np.float32).reshape(10, 3)
    store = FeatureStore.create(tmp_path / "f.bin", 10, 3)
    store.write(6, data[6:])
    store.write(0, data[:6])
    store.flush()
    opened = FeatureStore.open(tmp_path / "f.bin")
    assert len(opened) == 10 and opened.dim == 3
    np.testing.assert_array_equal(opened.array, data)
    assert json.loads(sidecar_path(tmp_path / "f.bin").read_text())["complete"] is True
    with pytest.raises(ValueError, match="read-only"):
        opened.write(0, data[:1])


def test_feature_store_half_written_is_refused_then_resumed(tmp_path) -> None:
    path = tmp_path / "f.bin"
    store = FeatureStore.create(path, 8, 2)
    store.write(0, np.ones((4, 2)))
    store.flush()
    with pytest.raises(ValueError, match="incomplete .4 of 8"):
        FeatureStore.open(path)
    resumed = FeatureStore.open(path, writable=True, allow_incomplete=True)
    resumed.write(4, np.full((4, 2), 2.0))
    resumed.flush()
    np.testing.assert_array_equal(FeatureStore.open(path).array[:, 0], [1, 1, 1, 1, 2, 2, 2, 2])


def test_feature_store_is_not_complete_until_flushed(tmp_path) -> None:
    path = tmp_path / "f.bin"
    store = FeatureStore.create(path, 4, 2)
    store.write(0, np.ones((4, 2)))
    assert store.complete
    # A crash here (no flush) must not leave a store that opens as complete.
    with pytest.raises(ValueError, match="incomplete"):
        FeatureStore.open(path)
    store.flush()
    # Rewriting a finished store marks it incomplete on disk until the next flush.
    again = FeatureStore.open(path, writable=True)
    again.write(0, np.zeros((1, 2)))
    with pytest.raises(ValueError, match="incomplete"):
        FeatureStore.open(path)
    again.flush()
    assert FeatureStore.open(path).array[0, 0] == 0.0


def test_feature_store_rejects_bad_input(tmp_path) -> None:
    path = tmp_path / "f.bin"
    store = FeatureStore.create(path, 4, 2)
    with pytest.raises(ValueError, match="shape"):
        store.write(0, np.ones((2, 3)))
    with pytest.raises(ValueError, match="outside"):
        store.write(3, np.ones((2, 2)))
    store.write(0, np.ones((4, 2)))
    store.flush()
    with pytest.raises(ValueError, match="already exists"):
        FeatureStore.create(path, 4, 2)
    with open(path, "r+b") as handle:
        handle.truncate(8)
    with pytest.raises(ValueError, match="bytes"):
        FeatureStore.open(path)
    with pytest.raises(ValueError, match="not a feature store"):
        FeatureStore.open(tmp_path / "missing.bin")
    with pytest.raises(ValueError, match="dim >= 1"):
        FeatureStore.create(tmp_path / "g.bin", 3, 0)


def test_feature_store_zero_rows(tmp_path) -> None:
    FeatureStore.create(tmp_path / "e.bin", 0, 5).flush()
    assert FeatureStore.open(tmp_path / "e.bin").array.shape == (0, 5)


def test_in_memory_or_store(tmp_path) -> None:
    in_memory = in_memory_or_store(3, 4)
    assert type(in_memory) is np.ndarray and in_memory.shape == (3, 4) and in_memory.dtype == np.float32
    on_disk = in_memory_or_store(3, 4, tmp_path / "scratch.bin")
    assert isinstance(on_disk, np.memmap) and on_disk.shape == (3, 4)
    assert (tmp_path / "scratch.bin").stat().st_size == 3 * 4 * 4


# --- budgets ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sizes", "budget", "expected"),
    [
        ([2, 10, 10], 12, [2, 5, 5]),  # the small cluster is taken whole, 10 re-split
        ([3, 3, 3, 100], 10, [3, 2, 2, 3]),  # share 2.5: leftover 2 to the largest, then index 0
        ([5, 9, 7], 10, [3, 4, 3]),  # leftover 1 goes to the largest cluster
        ([1, 1, 1], 2, [1, 1, 0]),  # equal sizes: leftover by lower index
        ([1, 4, 20, 2], 15, [1, 4, 8, 2]),  # cascade: 1, 2 and 4 all fit their shares
        ([4, 6], 100, [4, 6]),
        ([4, 6], 0, [0, 0]),
        ([], 5, []),
    ],
)
def test_split_budget_examples(sizes, budget, expected) -> None:
    assert split_budget(sizes, budget) == expected


def test_split_budget_rejects_negative() -> None:
    with pytest.raises(ValueError, match="budget"):
        split_budget([1, 2], -1)
    with pytest.raises(ValueError, match="sizes"):
        split_budget([1, -2], 1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 60), max_size=25), st.integers(0, 800))
def test_split_budget_invariants(sizes, budget) -> None:
    counts = split_budget(sizes, budget)
    assert sum(counts) == min(budget, sum(sizes))
    assert all(0 <= c <= s for c, s in zip(counts, sizes))
    if sizes:
        even_share = budget // len(sizes)
        for count, size in zip(counts, sizes):
            if count < size:  # not taken whole: at least the even share, and water-filled
                assert count >= even_share
                assert count >= max(counts) - 1


def test_split_budget_weighted_example() -> None:
    # ideal 41.7 > 5 -> whole; 45 left over equal weights -> 22.5 each, tie to lower index
    assert split_budget_weighted([5, 100, 100], [10, 1, 1], 50) == [5, 23, 22]
    assert split_budget_weighted([10, 10], [3, 1], 8) == [6, 2]
    # largest remainder: ideal [0.8, 1.2, 2.0] -> floors [0, 1, 2], the leftover to 0.8
    assert split_budget_weighted([10, 10, 10], [2, 3, 5], 4) == [1, 1, 2]
    # ideal [0.5, 1.0, 3.5]: equal fractions, the leftover to the lower index
    assert split_budget_weighted([10, 10, 10], [1, 2, 7], 5) == [1, 1, 3]
    # zero weight gets nothing until the weighted group is exhausted
    assert split_budget_weighted([3, 10], [1, 0], 2) == [2, 0]
    assert split_budget_weighted([3, 10], [1, 0], 7) == [3, 4]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 60), st.floats(0, 5, allow_nan=False)), max_size=20),
    st.integers(0, 800),
)
def test_split_budget_weighted_invariants(groups, budget) -> None:
    sizes = [size for size, _ in groups]
    weights = [weight for _, weight in groups]
    counts = split_budget_weighted(sizes, weights, budget)
    assert sum(counts) == min(budget, sum(sizes))
    assert all(0 <= c <= s for c, s in zip(counts, sizes))
    positive_full = all(c == s for c, s, w in zip(counts, sizes, weights) if w > 0)
    if not positive_full:
        assert all(c == 0 for c, w in zip(counts, weights) if w == 0)


# --- CCS -------------------------------------------------------------------------------


def test_ccs_uniform_scores_fill_every_bin_equally() -> None:
    scores = np.random.default_rng(0).uniform(size=10_000)
    picked = ccs_sample(scores, 1000, np.random.default_rng(1), bins=50, trim=0.05)
    ranked = np.sort(scores)
    low, high = ranked[500], ranked[9499]  # 5% = 500 trimmed at each end
    chosen = scores[picked]
    assert chosen.min() >= low and chosen.max() <= high  # nothing trimmed is taken
    bin_index = np.clip(np.floor((chosen - low) / (high - low) * 50), 0, 49).astype(int)
    # Every bin holds ~180 samples, so each gets exactly 1000 / 50.
    assert np.bincount(bin_index, minlength=50).tolist() == [20] * 50


def test_ccs_sparse_bins_are_taken_whole_and_deficit_redistributed() -> None:
    rng = np.random.default_rng(0)
    singles = np.arange(1, 9) + 0.5  # one sample in each of bins 1..8
    scores = np.concatenate([rng.uniform(0, 1, 200), singles, rng.uniform(9, 10, 199), [0.0, 10.0]])
    picked = ccs_sample(scores, 48, np.random.default_rng(0), bins=10, trim=0.0)
    chosen = scores[picked]
    assert set(singles) <= set(chosen)
    # 48 - 8 singles = 40 left for the two dense bins
    assert (chosen < 1).sum() == 20 and (chosen >= 9).sum() == 20


def test_ccs_nan_scores_get_a_proportional_random_share() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=1000)
    scores[rng.choice(1000, 300, replace=False)] = np.nan
    picked = ccs_sample(scores, 100, np.random.default_rng(0))
    assert len(picked) == 100
    assert np.isnan(scores[picked]).sum() == 100 * 300 // 1000


def test_ccs_fills_from_trimmed_when_budget_exceeds_kept() -> None:
    scores = np.arange(100, dtype=float)
    picked = ccs_sample(scores, 90, np.random.default_rng(0), trim=0.1)  # 80 kept, 20 trimmed
    assert set(range(10, 90)) <= set(picked.tolist())
    assert len(picked) == 90


def test_ccs_edges_and_determinism() -> None:
    scores = np.random.default_rng(3).normal(size=500)
    assert ccs_sample(scores, 600, np.random.default_rng(0)).tolist() == list(range(500))
    assert len(ccs_sample(scores, 0, np.random.default_rng(0))) == 0
    first = ccs_sample(scores, 50, np.random.default_rng(7))
    np.testing.assert_array_equal(first, ccs_sample(scores, 50, np.random.default_rng(7)))
    assert not np.array_equal(first, ccs_sample(scores, 50, np.random.default_rng(8)))
    assert first.dtype == np.int64
    for bad in ({"budget": -1}, {"bins": 0}, {"trim": 0.5}):
        with pytest.raises(ValueError):
            ccs_sample(scores, **{"budget": 5, "rng": np.random.default_rng(0), **bad})


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(float("nan")), st.just(float("inf"))), max_size=300),
    st.integers(0, 400),
    st.integers(1, 60),
    st.integers(0, 2**31),
)
def test_ccs_invariants(values, budget, bins, seed) -> None:
    picked = ccs_sample(np.array(values, dtype=float), budget, np.random.default_rng(seed), bins=bins)
    assert len(picked) == min(budget, len(values))
    assert len(np.unique(picked)) == len(picked) and np.all(np.diff(picked) > 0)
    assert picked.size == 0 or (picked.min() >= 0 and picked.max() < len(values))


def test_trim_by_rank_counts_ties_exactly() -> None:
    kept, trimmed = trim_by_rank(np.zeros(40), 0.05)
    assert trimmed.tolist() == [0, 1, 38, 39] and len(kept) == 36


# --- multi-way score choice ------------------------------------------------------------


def test_histogram_entropy_closed_forms() -> None:
    assert histogram_entropy(np.r_[np.full(50, -1.0), np.full(50, 1.0)], trim=0.0) == pytest.approx(1.0)
    three = np.repeat([-1.0, 0.0, 1.0], 30)
    assert histogram_entropy(three, trim=0.0) == pytest.approx(math.log2(3))
    assert histogram_entropy(np.full(10, 3.0)) == 0.0
    assert histogram_entropy(np.array([1.0, np.nan])) == 0.0
    with_nan = np.r_[three, np.full(20, np.nan)]
    assert histogram_entropy(with_nan, trim=0.0) == pytest.approx(math.log2(3))
    spread = np.random.default_rng(0).uniform(size=5000)
    # z of a uniform spans +-1.73 (+-1.56 after trimming): about 20 of the 50 bins
    assert 4.0 < histogram_entropy(spread) < math.log2(21)


def test_choose_score_picks_spread_skips_sparse_and_breaks_ties_by_name() -> None:
    rng = np.random.default_rng(0)
    two_point = np.repeat([0.0, 1.0], 500)
    uniform = rng.uniform(size=1000)
    assert choose_score({"narrow": two_point, "wide": uniform}) == "wide"
    assert choose_score({"b": uniform, "a": uniform.copy()}) == "a"
    mostly_missing = np.full(1000, np.nan)
    mostly_missing[:100] = rng.uniform(size=100)  # spread, but only 10% present
    assert choose_score({"ig": mostly_missing, "ppl": two_point}) == "ppl"
    assert choose_score({"ig": mostly_missing, "ppl": two_point}, min_finite_fraction=0.0) == "ig"
    assert choose_score({"x": np.full(4, np.nan), "y": np.r_[1.0, np.full(3, np.nan)]}) == "y"
    with pytest.raises(ValueError, match="at least one"):
        choose_score({})
    with pytest.raises(ValueError, match="length"):
        choose_score({"a": np.zeros(3), "b": np.zeros(4)})


# --- clustering ------------------------------------------------------------------------


def corners(k: int, dim: int = 8) -> np.ndarray:
    return 10.0 * np.eye(dim)[:k]


def test_kmeans_recovers_separated_blobs_and_is_deterministic() -> None:
    points, truth = blobs(100, corners(4), 0.3, seed=0)
    labels, centroids, wss = kmeans(points, 4, seed=1)
    assert centroids.shape == (4, 8)
    # every true blob maps to exactly one cluster and vice versa
    assert len({(t, label) for t, label in zip(truth, labels)}) == 4
    again = kmeans(points, 4, seed=1)
    np.testing.assert_array_equal(labels, again[0])
    np.testing.assert_array_equal(centroids, again[1])
    brute = ((points[:, None, :] - centroids[None]) ** 2).sum(-1)
    assert wss == pytest.approx(brute.min(axis=1).sum(), rel=1e-4)


def test_kmeans_clamps_k_and_subsamples_with_minibatch() -> None:
    labels, centroids, _ = kmeans(np.eye(3, dtype=np.float32), 5, seed=0)
    assert len(centroids) == 3 and sorted(labels.tolist()) == [0, 1, 2]
    points, truth = blobs(1000, corners(3), 0.3, seed=1)
    options = {"fit_sample": 300, "minibatch_threshold": 100, "chunk": 257}
    labels, centroids, _ = kmeans(points, 3, seed=0, **options)
    assert len(labels) == 3000 and len({(t, label) for t, label in zip(truth, labels)}) == 3
    again, centroids_again, _ = kmeans(points, 3, seed=0, **options)
    np.testing.assert_array_equal(labels, again)
    np.testing.assert_array_equal(centroids, centroids_again)


def test_kmeans_rejects_bad_input() -> None:
    bad = np.ones((5, 2))
    bad[2, 1] = np.nan
    with pytest.raises(ValueError):
        kmeans(bad, 2, seed=0)
    with pytest.raises(ValueError, match="backend"):
        kmeans(np.eye(4), 2, seed=0, backend="magic")
    with pytest.raises(ValueError, match="non-empty"):
        kmeans(np.zeros((0, 3)), 2, seed=0)


def test_faiss_backend_needs_faiss() -> None:
    try:
        import faiss  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="faiss"):
            kmeans(np.eye(4), 2, seed=0, backend="faiss")
    else:
        labels, centroids, _ = kmeans(np.eye(4, dtype=np.float32), 2, seed=0, backend="faiss")
        assert len(labels) == 4 and centroids.shape == (2, 4)


def test_assign_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(999, 5)).astype(np.float32)
    centroids = rng.normal(size=(7, 5)).astype(np.float32)
    labels, wss = assign(points, centroids, chunk=100)
    brute = ((points[:, None, :].astype(float) - centroids[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(labels, brute.argmin(axis=1))
    assert wss == pytest.approx(brute.min(axis=1).sum(), rel=1e-5)


def test_elbow_k_closed_forms() -> None:
    assert elbow_k([1, 2, 3, 4, 5], [100, 20, 15, 12, 10]) == 2
    assert elbow_k([5, 1, 3, 2, 4], [10, 100, 15, 20, 12]) == 2  # order of the grid does not matter
    assert elbow_k([1, 2, 3], [30, 20, 10]) == 1  # straight line: no elbow
    # A straight line whose scaled gaps are rounding noise (~1e-16) still has no elbow.
    assert elbow_k(list(range(5, 55, 5)), [1000 - 17.3 * k for k in range(5, 55, 5)]) == 5
    assert elbow_k([2, 4], [10, 1]) == 2
    assert elbow_k([1, 2, 3], [5, 5, 5]) == 1
    with pytest.raises(ValueError):
        elbow_k([], [])


def test_choose_k_finds_the_true_number_of_blobs() -> None:
    points, _ = blobs(80, corners(4), 0.5, seed=2)
    k, labels, wss_by_k = choose_k(points, grid=(2, 3, 4, 5, 6, 8, 10), seed=0)
    assert k == 4
    assert sorted(wss_by_k) == [2, 3, 4, 5, 6, 8, 10]
    assert len(np.unique(labels)) == 4
    _, _, wss_small = choose_k(points[:3], grid=(2, 5, 10), seed=0)
    assert sorted(wss_small) == [2, 3]  # clamped to n = 3 and merged
    with pytest.raises(ValueError, match="grid"):
        choose_k(points, grid=(), seed=0)


def test_search_projection_keeps_squared_norms_in_expectation() -> None:
    assert search_projection(64, None, seed=0) is None
    assert search_projection(64, 64, seed=0) is None  # no reduction: cluster the rows themselves
    with pytest.raises(ValueError, match="search_dim"):
        search_projection(64, 0, seed=0)
    projection = search_projection(2048, 256, seed=3)
    assert projection.shape == (2048, 256) and projection.dtype == np.float32
    np.testing.assert_array_equal(projection, search_projection(2048, 256, seed=3))
    assert not np.array_equal(projection, search_projection(2048, 256, seed=4))
    rows = np.random.default_rng(0).normal(size=(400, 2048)).astype(np.float32)
    ratio = ((rows @ projection) ** 2).sum(1) / (rows**2).sum(1)
    # Each ratio is about chi-square(256) / 256: mean 1, standard deviation sqrt(2 / 256) = 0.088;
    # the mean of 400 has deviation 0.0044 (the 7-sigma bound is 0.03), one ratio stays within 5.5.
    assert abs(ratio.mean() - 1.0) < 0.03
    assert 0.5 < ratio.min() and ratio.max() < 1.5


def test_choose_k_on_a_projection_finds_the_same_clusters(tmp_path) -> None:
    rng = np.random.default_rng(5)
    centers = rng.normal(size=(6, 1024))
    points, truth = blobs(60, centers, 0.5, seed=6)
    store = FeatureStore.create(tmp_path / "vectors.f32", len(points), points.shape[1])
    store.write(0, points)
    store.flush()
    features = FeatureStore.open(tmp_path / "vectors.f32").array
    grid = (2, 3, 4, 6, 8, 10, 12)
    full_k, full_labels, full_wss = choose_k(points, grid=grid, seed=0)
    k, labels, wss_by_k = choose_k(features, grid=grid, seed=0, chunk=97, search_dim=128, search_n_init=1)
    assert full_k == k == 6
    # the same partition as the full-width clustering and as the truth
    assert len({(t, label) for t, label in zip(truth, labels)}) == 6
    assert len({(a, b) for a, b in zip(full_labels, labels)}) == 6
    # The WSS estimates are those of the full width, to within the projection's spread
    # (chi-square(128) / 128 per distance: deviation 0.125 each, far less for a sum of 360).
    assert wss_by_k[6] == pytest.approx(full_wss[6], rel=0.05)
    again = choose_k(features, grid=grid, seed=0, chunk=97, search_dim=128, search_n_init=1)
    np.testing.assert_array_equal(labels, again[1])
    bad = points.copy()
    bad[7, 3] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        choose_k(bad, grid=grid, seed=0, search_dim=128)


def test_cluster_cosine_stats_closed_form() -> None:
    features = np.array([[2.0, 0, 0], [0, 3.0, 0], [0, 0, 1.0], [0, 0, 5.0]])
    directions, density = cluster_cosine_stats(features, np.array([0, 0, 1, 1]), k=3)
    np.testing.assert_allclose(directions[0], [2**-0.5, 2**-0.5, 0], atol=1e-6)
    np.testing.assert_allclose(density, [2**-0.5, 1.0, 0.0], atol=1e-6)


# --- redundancy and LITE pruning -------------------------------------------------------


def brute_cosine(features: np.ndarray) -> np.ndarray:
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    return unit @ unit.T


def test_max_cosine_to_earlier_matches_brute_force() -> None:
    features = np.random.default_rng(0).normal(size=(300, 6)).astype(np.float32)
    similarity = brute_cosine(features.astype(float))
    earlier = max_cosine_to_earlier(features, chunk=64)
    assert earlier[0] == -np.inf
    np.testing.assert_allclose(earlier[1:], [similarity[i, :i].max() for i in range(1, 300)], atol=1e-5)
    order = np.array([5, 2, 9, 0])
    sub = brute_cosine(features[order].astype(float))
    got = max_cosine_to_earlier(features, chunk=3, rows=order)
    np.testing.assert_allclose(got[1:], [sub[i, :i].max() for i in range(1, 4)], atol=1e-5)


def test_zero_rows_have_cosine_zero() -> None:
    features = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(max_cosine_to_earlier(features), [-np.inf, 0.0, 0.0])


def test_lite_prune_drops_exact_duplicates_first() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(200, 16))
    copies_of = rng.choice(200, 20, replace=False)
    pool = np.concatenate([base, base[copies_of]])  # copies arrive later
    keep = lite_prune(pool, np.zeros(220, dtype=int), 200, chunk=50)
    assert keep.tolist() == list(range(200))


def test_lite_prune_cuts_large_clusters_first() -> None:
    rng = np.random.default_rng(1)
    labels = np.repeat([7, 3, 5], [10, 50, 100])  # any label values work
    rng.shuffle(labels)
    features = rng.normal(size=(160, 4))
    keep = lite_prune(features, labels, 100, chunk=32)
    kept_sizes = {label: int((labels[keep] == label).sum()) for label in (7, 3, 5)}
    assert kept_sizes == {7: 10, 3: 45, 5: 45}
    assert keep.dtype == np.int64 and np.all(np.diff(keep) > 0)
    assert lite_prune(features, labels, 500).tolist() == list(range(160))
    with pytest.raises(ValueError, match="pool_budget"):
        lite_prune(features, labels, 0)
    with pytest.raises(ValueError, match="labels"):
        lite_prune(features, labels[:-1], 10)
