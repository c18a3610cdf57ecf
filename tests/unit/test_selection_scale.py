"""Selection at scale: 200k streamed feature vectors, bounded memory (the issue's synthetic test).

Arithmetic for this test (n = 200,000 rows, dim = 64, float32):

* the feature matrix is n * dim * 4 = 51.2 MB, on disk behind a memmap (page cache, not heap);
* k-means fits on a 100k-row subsample: 100,000 * 64 * 4 = 25.6 MB, plus O(n) labels/scores;
* LITE similarity blocks are chunk^2 * 4 = 4 MB (chunk = 1024) plus two chunk x dim blocks;
* an n x n similarity matrix would be n^2 * 4 = 160 GB.

tracemalloc sees numpy's allocations (not the memmap's pages, not scikit-learn's C buffers),
which is what would grow if any stage materialised the features or a pairwise matrix.
"""

from __future__ import annotations

import tracemalloc

import numpy as np

from mcit.selection._featurestore import FeatureStore
from mcit.selection._prune import lite_prune
from mcit.selection.lamp import lamp_select

ROWS, DIM, CLUSTERS, BLOCK = 200_000, 64, 12, 10_000
FEATURE_BYTES = ROWS * DIM * 4
FIT_SAMPLE = 100_000


def write_mixture(path) -> np.ndarray:
    """Stream a seeded Gaussian mixture of unit vectors into a store; return the true mixture labels."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(CLUSTERS, DIM)) * 0.6
    store = FeatureStore.create(path, ROWS, DIM)
    truth = rng.integers(0, CLUSTERS, ROWS)
    for start in range(0, ROWS, BLOCK):
        block = centers[truth[start : start + BLOCK]] + 0.15 * rng.normal(size=(BLOCK, DIM))
        store.write(start, block / np.linalg.norm(block, axis=1, keepdims=True))
    store.flush()
    return truth


def peak_bytes(call):
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_lamp_and_lite_on_200k_streamed_vectors_stay_in_bounded_memory(tmp_path) -> None:
    truth = write_mixture(tmp_path / "vectors.f32")
    features = FeatureStore.open(tmp_path / "vectors.f32").array
    assert isinstance(features, np.memmap)
    rng = np.random.default_rng(1)
    scores = {"ppl": rng.normal(size=ROWS), "el2n": rng.uniform(size=ROWS), "ig": rng.gamma(2.0, size=ROWS)}
    scores["ig"][rng.uniform(size=ROWS) < 0.3] = np.nan

    selection, lamp_peak = peak_bytes(lambda: lamp_select(features, scores, 20_000, seed=0, fit_sample=FIT_SAMPLE))
    assert len(selection.indices) == 20_000 and np.all(np.diff(selection.indices) > 0)
    assert sum(selection.cluster_budgets) == 20_000
    assert np.bincount(selection.cluster_of_index, minlength=selection.k).tolist() == selection.cluster_budgets
    # Pseudo-tasks follow the mixture: almost every cluster is dominated by one component.
    purity = [
        np.bincount(truth[selection.labels == c]).max() / max(1, (selection.labels == c).sum())
        for c in range(selection.k)
    ]
    assert np.median(purity) > 0.95
    # Fit subsample + about 100 bytes per row; never the 51.2 MB feature matrix.
    assert lamp_peak < FIT_SAMPLE * DIM * 4 + 100 * ROWS < FEATURE_BYTES

    keep, lite_peak = peak_bytes(lambda: lite_prune(features, selection.labels, 150_000))
    assert len(keep) == 150_000 and np.all(np.diff(keep) > 0)
    kept_sizes = np.bincount(selection.labels[keep], minlength=selection.k)
    sizes = np.asarray(selection.cluster_sizes)
    cut = kept_sizes < sizes
    # Large clusters first: every cut cluster ends at one common level (+1), no untouched one exceeds it.
    assert kept_sizes[cut].max() - kept_sizes[cut].min() <= 1
    assert np.all(sizes[~cut] <= kept_sizes[cut].max())
    # One 1024^2 float32 similarity block and its mask, the row blocks, O(n) bookkeeping.
    chunk = 1024
    assert lite_peak < 2 * chunk * chunk * 4 + 4 * chunk * DIM * 4 + 64 * ROWS
    assert lite_peak * 1000 < ROWS * ROWS * 4
