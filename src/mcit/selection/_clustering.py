"""k-means with bounded memory, and the WSS elbow that picks k (METHODS.md, step 2).

Centroids are fitted on a seeded subsample of at most ``fit_sample`` rows (and at most
``fit_bytes`` bytes of features), then every row is assigned in chunks of ``chunk`` rows.
Peak memory is therefore about 2-2.5 x the subsample (scikit-learn makes one more
subsample-sized temporary) plus ``chunk * (dim + k)`` floats and ``8 * n`` bytes of labels,
whatever ``n`` is, and ``features`` may be a read-only memmap.

:func:`choose_k` can cluster a seeded Gaussian projection of the rows to ``search_dim``
coordinates instead of the rows themselves (Johnson-Lindenstrauss: squared distances are
kept in expectation, to within a few percent at 256 coordinates): the search over the k
grid then costs ``search_dim / dim`` of the full-width one, and rows are projected a chunk
at a time, so memory stays bounded.
"""

from __future__ import annotations

import warnings

import numpy as np

from mcit.seeds import derive_seed

DEFAULT_K_GRID = (5, 10, 15, 20, 25, 30, 35, 40, 45, 50)
BACKENDS = ("auto", "sklearn", "minibatch", "faiss")


def check_features(features: np.ndarray) -> tuple[int, int]:
    """``(n, dim)`` of a 2-D feature matrix with at least one row.

    Raises:
        ValueError: If ``features`` is not 2-D or has no rows.
    """
    if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0:
        raise ValueError(f"features must be a non-empty (n, dim) matrix, got shape {features.shape}")
    return int(features.shape[0]), int(features.shape[1])


def fit_rows(n: int, dim: int, seed: int, fit_sample: int, fit_bytes: int, itemsize: int = 4) -> np.ndarray | None:
    """Sorted seeded subsample of row indices to fit on, or ``None`` to fit on all rows."""
    limit = max(1, min(fit_sample, fit_bytes // max(1, dim * itemsize)))
    if n <= limit:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def _fit_centroids(
    sample: np.ndarray, k: int, seed: int, backend: str, minibatch_threshold: int, n_init: int, owned: bool
) -> np.ndarray:
    """Centroids of ``sample``; ``owned`` says it is our private copy, free to modify in place."""
    if backend == "auto":
        backend = "sklearn" if len(sample) <= minibatch_threshold else "minibatch"
    if backend == "faiss":
        try:
            import faiss
        except ImportError:
            raise ValueError("backend='faiss' needs the faiss package (pip install faiss-cpu)") from None
        model = faiss.Kmeans(sample.shape[1], k, niter=25, nredo=n_init, seed=seed % 2**31, verbose=False)
        model.train(np.ascontiguousarray(sample, dtype=np.float32))
        return np.asarray(model.centroids, dtype=np.float32)
    # Imported here, not at the top: scikit-learn (with SciPy's stats and pandas) costs about 2 s
    # of start-up, which every process that imports the runner would pay without ever clustering.
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        # Fewer distinct points than k: duplicate centroids, which assignment leaves empty.
        warnings.simplefilter("ignore", ConvergenceWarning)
        if backend == "sklearn":
            # KMeans centres X in place (and restores it) unless copy_x; copying our own
            # subsample would double the largest allocation of the whole selection.
            model = KMeans(n_clusters=k, n_init=n_init, random_state=seed, copy_x=not owned)
        elif backend == "minibatch":
            model = MiniBatchKMeans(n_clusters=k, n_init=n_init, batch_size=4096, random_state=seed)
        else:
            raise ValueError(f"unknown k-means backend {backend!r}; valid: {', '.join(BACKENDS)}")
        model.fit(sample)
    return np.asarray(model.cluster_centers_, dtype=np.float32)


def search_projection(dim: int, search_dim: int | None, seed: int) -> np.ndarray | None:
    """The ``(dim, search_dim)`` Gaussian matrix scaled by ``1/sqrt(search_dim)``, or ``None``.

    ``None`` (cluster the rows as they are) when ``search_dim`` is ``None`` or not smaller
    than ``dim``. The scaling keeps squared distances, and so WSS values, in expectation.

    Raises:
        ValueError: If ``search_dim < 1``.
    """
    if search_dim is None or search_dim >= dim:
        return None
    if search_dim < 1:
        raise ValueError(f"search_dim must be >= 1, got {search_dim}")
    rng = np.random.default_rng(derive_seed(seed, "kmeans-projection", dim, search_dim))
    return (rng.standard_normal((dim, search_dim)) / np.sqrt(search_dim)).astype(np.float32)


def assign(
    features: np.ndarray, centroids: np.ndarray, chunk: int = 1024, projection: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """Nearest centroid of every row, computed ``chunk`` rows at a time.

    Args:
        features: ``(n, dim)`` matrix or memmap.
        centroids: ``(k, dim)`` centroids, or ``(k, search_dim)`` ones with ``projection``.
        chunk: Rows per block; memory is about ``chunk * (dim + k)`` floats.
        projection: ``(dim, search_dim)`` matrix each block is multiplied by first.

    Returns:
        ``(labels, wss)``: int64 labels (ties go to the lower centroid index) and the
        within-cluster sum of squared Euclidean distances.

    Raises:
        ValueError: If a row holds NaN or inf.
    """
    centroids = np.asarray(centroids, dtype=np.float32)
    centroid_sq = (centroids.astype(np.float64) ** 2).sum(axis=1)
    labels = np.empty(features.shape[0], dtype=np.int64)
    wss = 0.0
    for start in range(0, features.shape[0], chunk):
        block = np.asarray(features[start : start + chunk], dtype=np.float32)
        if not np.isfinite(block).all():
            raise ValueError(f"features hold NaN or inf in rows {start}..{start + len(block)}")
        if projection is not None:
            block = block @ projection
        # Only the small (rows x k) matrix is float64; the row block stays float32.
        row_sq = np.einsum("ij,ij->i", block, block).astype(np.float64)
        distance = row_sq[:, None] - 2.0 * (block @ centroids.T).astype(np.float64) + centroid_sq
        nearest = distance.argmin(axis=1)
        labels[start : start + len(block)] = nearest
        wss += float(np.maximum(distance[np.arange(len(block)), nearest], 0.0).sum())
    return labels, wss


def kmeans(
    features: np.ndarray,
    k: int,
    seed: int,
    *,
    backend: str = "auto",
    minibatch_threshold: int = 50_000,
    fit_sample: int = 100_000,
    fit_bytes: int = 1 << 29,
    chunk: int = 1024,
    n_init: int = 3,
) -> tuple[np.ndarray, np.ndarray, float]:
    """k-means of the rows of ``features``, deterministic for a seed.

    Args:
        features: ``(n, dim)`` matrix or memmap.
        k: Number of clusters; clamped to ``n`` (and to the fit subsample size).
        seed: Seeds the subsample and the k-means initialisation.
        backend: ``"sklearn"`` (KMeans), ``"minibatch"`` (MiniBatchKMeans), ``"faiss"``
            (needs faiss installed), or ``"auto"``: KMeans when the fit sample has at most
            ``minibatch_threshold`` rows, MiniBatchKMeans above. ``"auto"`` never picks
            faiss, so results do not depend on what happens to be installed.
        minibatch_threshold: See ``backend``.
        fit_sample: Most rows the centroids are fitted on (a seeded subsample).
        fit_bytes: Most bytes of features the fit subsample may hold in RAM.
        chunk: Rows per block when assigning all rows.
        n_init: Number of k-means restarts (best inertia kept).

    Returns:
        ``(labels, centroids, wss)``: int64 labels for all rows, ``(k, dim)`` float32
        centroids, and the WSS over all rows. A cluster can be empty when the data has
        fewer distinct points than ``k``; callers must allow zero-size clusters.

    Raises:
        ValueError: On an empty matrix, ``k < 1``, non-finite features or a bad backend.
    """
    n, dim = check_features(features)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rows = fit_rows(n, dim, seed, fit_sample, fit_bytes, features.dtype.itemsize)
    sample = np.asarray(features if rows is None else features[rows])
    centroids = _fit_centroids(
        sample, min(k, len(sample)), seed, backend, minibatch_threshold, n_init, rows is not None
    )
    labels, wss = assign(features, centroids, chunk)
    return labels, centroids, wss


def elbow_k(ks: list[int], wss: list[float]) -> int:
    """The k at the elbow of a decreasing WSS curve (kneedle: farthest below the chord).

    Both axes are scaled to [0, 1]; the chosen k maximises the vertical gap between the
    chord from the first to the last point and the curve. If no point lies strictly below
    the chord (fewer than three candidates, a straight or concave curve), the smallest k
    is returned: without an elbow, prefer the coarser clustering. Ties go to the smaller k.
    """
    if not ks or len(ks) != len(wss):
        raise ValueError(f"need matching, non-empty k and WSS lists, got {len(ks)} and {len(wss)}")
    order = np.argsort(ks, kind="stable")
    k_values = np.asarray(ks, dtype=np.float64)[order]
    w_values = np.asarray(wss, dtype=np.float64)[order]
    if len(k_values) < 3 or k_values[-1] == k_values[0]:
        return int(k_values[0])
    x = (k_values - k_values[0]) / (k_values[-1] - k_values[0])
    span = w_values.max() - w_values.min()
    y = (w_values - w_values.min()) / span if span > 0 else np.zeros_like(w_values)
    gap = (y[0] + (y[-1] - y[0]) * x) - y
    best = int(np.argmax(gap))
    return int(k_values[best]) if gap[best] > 1e-12 else int(k_values[0])


def choose_k(
    features: np.ndarray,
    grid: tuple[int, ...] = DEFAULT_K_GRID,
    seed: int = 0,
    *,
    backend: str = "auto",
    minibatch_threshold: int = 50_000,
    fit_sample: int = 100_000,
    fit_bytes: int = 1 << 29,
    chunk: int = 1024,
    n_init: int = 3,
    search_dim: int | None = None,
    search_n_init: int | None = None,
) -> tuple[int, np.ndarray, dict[int, float]]:
    """Pick k from ``grid`` by the WSS elbow (:func:`elbow_k`) and label every row.

    Every k is fitted on the same seeded subsample (see :func:`kmeans`, whose keyword
    options these are) and its WSS is measured on that subsample, scaled by
    ``n / subsample_size`` to estimate the WSS of the whole pool; only the chosen k's
    centroids are then used to assign all rows. Values of k above the subsample size are
    clamped to it (and merged).

    Args:
        features: ``(n, dim)`` matrix or memmap.
        grid: Candidate numbers of clusters.
        seed: Seeds the subsample, the projection and every fit.
        n_init: k-means restarts of the chosen k's final fit.
        search_dim: Cluster a seeded Gaussian projection of the rows to this many
            coordinates (:func:`search_projection`); ``None`` clusters the rows as they are.
        search_n_init: Restarts of each fit of the k search; ``None`` means ``n_init`` (and
            the search's fit of the chosen k is kept). Fewer restarts only cost WSS
            precision, and the elbow reads the shape of the whole curve.

    Returns:
        ``(k, labels, wss_by_k)``.

    Raises:
        ValueError: On an empty grid, a k < 1, or what :func:`kmeans` rejects.
    """
    n, dim = check_features(features)
    if not grid or min(grid) < 1:
        raise ValueError(f"the k grid must be non-empty with every k >= 1, got {grid}")
    rows = fit_rows(n, dim, seed, fit_sample, fit_bytes, features.dtype.itemsize)
    sample = np.asarray(features if rows is None else features[rows])
    projection = search_projection(dim, search_dim, seed)
    if projection is not None:
        if not np.isfinite(sample).all():
            raise ValueError("features hold NaN or inf")
        sample = sample @ projection
    owned = rows is not None or projection is not None
    search_n_init = n_init if search_n_init is None else search_n_init
    scale = n / len(sample)
    ks = sorted({min(int(k), len(sample)) for k in grid})
    wss_by_k: dict[int, float] = {}
    centroids_by_k: dict[int, np.ndarray] = {}
    for k in ks:
        centroids = _fit_centroids(sample, k, seed, backend, minibatch_threshold, search_n_init, owned)
        _, sample_wss = assign(sample, centroids, chunk)
        wss_by_k[k] = sample_wss * scale
        centroids_by_k[k] = centroids
    best = elbow_k(ks, [wss_by_k[k] for k in ks])
    centroids = centroids_by_k[best]
    if search_n_init != n_init:
        centroids = _fit_centroids(sample, best, seed, backend, minibatch_threshold, n_init, owned)
    labels, _ = assign(features, centroids, chunk, projection)
    return best, labels, wss_by_k


def cluster_cosine_stats(
    features: np.ndarray, labels: np.ndarray, k: int, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Mean direction of each cluster and its density (mean cosine of members to it).

    Rows are L2-normalised (zero rows stay zero). The direction is the normalised mean of
    a cluster's unit rows, and the mean cosine of the members to it equals the norm of that
    mean, so one chunked pass suffices. Empty clusters get a zero direction and density 0.

    Returns:
        ``(directions, density)``: ``(k, dim)`` float64 unit rows and ``(k,)`` values in
        ``[0, 1]``.
    """
    sums = np.zeros((k, features.shape[1]), dtype=np.float64)
    for start in range(0, features.shape[0], chunk):
        block = np.array(features[start : start + chunk], dtype=np.float32)
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))[:, None]
        block /= np.where(norms > 0, norms, 1.0)
        block_labels = labels[start : start + len(block)]
        order = np.argsort(block_labels, kind="stable")
        present, first = np.unique(block_labels[order], return_index=True)
        sums[present] += np.add.reduceat(block[order], first, axis=0)
    sizes = np.bincount(labels, minlength=k)[:k]
    length = np.linalg.norm(sums, axis=1)
    directions = sums / np.where(length > 0, length, 1.0)[:, None]
    density = np.where(sizes > 0, length / np.maximum(sizes, 1), 0.0)
    return directions, density
