"""k-means on dask arrays: distributed k-means|| and Lloyd, one reduce per iteration."""

from __future__ import annotations

import numbers
import operator

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .. import _core
from ..kmeans import _n_local_trials, _shift_and_tolerance, _PARALLEL_ROUNDS
from . import _common as C

_FLOATS = (np.dtype(np.float64), np.dtype(np.float32))


def _as_dask_array(X, name="X"):
    import dask.array as da

    if isinstance(X, da.Array):
        out = X
    elif hasattr(X, "to_dask_array") and C.is_dask(X):
        out = X.to_dask_array(lengths=True)
    else:
        out = da.from_array(np.asarray(X))
    if out.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got {out.ndim}-D")
    if out.dtype not in _FLOATS:
        out = out.astype(np.float64)
    if len(out.chunks[1]) > 1:
        out = out.rechunk({1: -1})
    if any(np.isnan(c) for c in out.chunks[0]):
        out = out.compute_chunk_sizes()
    return out


def _aligned(x, w):
    """Arrays from another process can sit misaligned in the message buffer,
    which the kernels refuse: copy only then (and make weights contiguous)."""
    x = np.require(x, requirements="A")
    return x, (None if w is None else np.require(w, dtype=np.float64, requirements="CA"))


def _column_stats(x):
    if x.shape[0] == 0:
        return 0, np.zeros(x.shape[1]), np.zeros(x.shape[1])
    mean, var = _core.kmeans_column_stats(x, 1)
    return x.shape[0], mean, var


def _merge_stats(parts):
    """Column means and (population) variances of the union: Chan's update."""
    n_tot, mean, m2 = 0, None, None
    for n, mu, var in parts:
        if n == 0:
            continue
        if mean is None:
            n_tot, mean, m2 = n, mu.copy(), var * n
            continue
        delta = mu - mean
        total = n_tot + n
        mean = mean + delta * (n / total)
        m2 = m2 + var * n + delta**2 * (n_tot * n / total)
        n_tot = total
    return mean, m2 / n_tot


def _step(x, w, centers, shift, prev):
    """One Lloyd pass over a partition: labels, sums, weights, #changed labels."""
    x, w = _aligned(x, w)
    k, d = centers.shape
    if x.shape[0] == 0:
        return np.zeros(0, np.int32), np.zeros((k, d)), np.zeros(k), 0
    labels, sums, weights = _core.kmeans_lloyd_step(x, w, centers, shift, 1)
    changed = x.shape[0] if prev is None else int(np.count_nonzero(labels != prev))
    return labels, sums, weights, changed


def _farthest(x, w, centers, shift, labels, m, offset):
    """The ``m`` rows farthest from their centre (distance desc, index asc),
    with what relocation needs: (distance, global index, shifted row rounded
    to X's dtype, weight, old label)."""
    x, w = _aligned(x, w)
    if x.shape[0] == 0:
        return []
    labels = np.require(labels, dtype=np.int32, requirements="CA")
    dist = _core.kmeans_label_distances(x, centers, shift, labels, 1)
    order = np.lexsort((np.arange(dist.size), -dist))[:m]
    rows = (x[order].astype(np.float64) - shift).astype(x.dtype).astype(np.float64)
    ww = np.ones(order.size) if w is None else w[order]
    return [(float(dist[i]), offset + int(i), rows[t], float(ww[t]), int(labels[i])) for t, i in enumerate(order)]


def _assign(x, w, centers):
    x, w = _aligned(x, w)
    if x.shape[0] == 0:
        return np.zeros(0, np.int32), 0.0
    return _core.kmeans_assign(x, centers, w, True, 1)


def _average_centers(sums, weights):
    """``ferromine_core::kmeans::average_centers``: means; clusters still empty
    take the heaviest cluster's mean."""
    out = sums.copy()
    for j, wj in enumerate(weights):
        if wj > 0:
            out[j] *= 1.0 / wj
    heaviest = 0
    for j in range(len(weights)):
        if weights[j] > weights[heaviest]:
            heaviest = j
    for j in range(len(weights)):
        if weights[j] <= 0 and j != heaviest:
            out[j] = out[heaviest]
    return out


# --- k-means|| on the cluster ---------------------------------------------


def _min_dist(x, w, cand_shifted, shift):
    """Squared distance (f64) of each row to its closest candidate and the
    weighted cost of the partition."""
    x, w = _aligned(x, w)
    if x.shape[0] == 0:
        return np.zeros(0), 0.0
    cand = (cand_shifted + shift).astype(x.dtype)
    labels, _ = _core.kmeans_assign(x, cand, None, False, 1)
    dist = _core.kmeans_label_distances(x, cand_shifted, shift, labels, 1)
    return dist, float(np.sum(dist if w is None else dist * w))


def _sample_round(x, w, cand_shifted, shift, phi, ell, seed, rnd, part):
    """Rows drawn with probability ``min(1, ell * w * D^2 / phi)``; the
    generator is seeded by (seed, round, partition)."""
    if x.shape[0] == 0 or phi <= 0:
        return np.zeros((0, x.shape[1]), dtype=x.dtype)
    dist, _ = _min_dist(x, w, cand_shifted, shift)
    p = ell * (dist if w is None else dist * w) / phi
    rng = np.random.default_rng([seed, rnd, part])
    return np.ascontiguousarray(x[rng.random(x.shape[0]) < p])


def _candidate_weights(x, w, cand):
    x, w = _aligned(x, w)
    if x.shape[0] == 0:
        return np.zeros(len(cand))
    labels, _ = _core.kmeans_assign(x, cand, None, False, 1)
    return np.bincount(labels, weights=w, minlength=len(cand)).astype(np.float64)


class KMeans(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator):
    """k-means on a dask array: k-means|| initialisation and Lloyd iterations
    on the cluster, each a map over partitions and a reduce of centre sums,
    weights and changed-label counts.

    From the same initial centres (``init=`` an array) the result equals
    :class:`ferromine.cluster.KMeans` on the concatenated data: centres within
    1e-9 relative (sums over partitions are added in another order), labels,
    ``n_iter_`` and the stopping rule (strict convergence, sklearn's
    tolerance, empty-cluster relocation) the same.

    Parameters
    ----------
    n_clusters : int, default=8
    init : {"k-means||"} or array-like of shape (n_clusters, n_features), default="k-means||"
        ``"k-means||"``: 5 rounds each drawing about ``oversampling_factor *
        n_clusters`` rows with probability proportional to ``w * D^2`` (a
        map and a reduce per round), then weighted k-means++ and a short
        Lloyd on the candidates on the client, as ``ferromine.cluster.KMeans(
        init="k-means||")`` does on one machine (the draws differ: they are
        seeded per partition).
    n_init : int, default=1
        Runs with different k-means|| seeds; the lowest inertia wins.
    max_iter : int, default=300
    tol : float, default=1e-4
        sklearn's rule: squared centre shift at most ``tol`` times the mean
        feature variance.
    oversampling_factor : float, default=2.0
    random_state : int, RandomState instance or None

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
    labels_ : dask array of int32
        Computed and persisted on the cluster.
    inertia_ : float
    n_iter_ : int
    n_features_in_ : int
    """

    def __init__(
        self,
        n_clusters=8,
        *,
        init="k-means||",
        n_init=1,
        max_iter=300,
        tol=1e-4,
        oversampling_factor=2.0,
        random_state=None,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.oversampling_factor = oversampling_factor
        self.random_state = random_state

    def _check_params(self):
        for name, low in (("n_clusters", 1), ("n_init", 1), ("max_iter", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
                raise ValueError(f"{name} must be an int >= {low}, got {v!r}")
        if not isinstance(self.tol, numbers.Real) or self.tol < 0:
            raise ValueError(f"tol must be a float >= 0, got {self.tol!r}")
        if not isinstance(self.oversampling_factor, numbers.Real) or self.oversampling_factor <= 0:
            raise ValueError(f"oversampling_factor must be > 0, got {self.oversampling_factor!r}")
        if isinstance(self.init, str) and self.init != "k-means||":
            raise ValueError(
                f"init must be 'k-means||' or an array of initial centres, got {self.init!r} "
                "(k-means++ is sequential over k passes: use 'k-means||' on a cluster)"
            )

    def fit(self, X, y=None, sample_weight=None):
        """Fit on a dask array (NumPy input is wrapped in one partition).

        Parameters
        ----------
        X : dask array of shape (n_samples, n_features)
            float32 stays float32; other numbers become float64. Partitions
            are the row chunks (persisted for the iterations).
        y : ignored
        sample_weight : dask or NumPy array of shape (n_samples,), optional

        Returns
        -------
        self
        """
        import dask

        self._check_params()
        X = _as_dask_array(X).persist()
        n, d = X.shape
        k = int(self.n_clusters)
        if n < k:
            raise ValueError(f"n_samples={n} should be >= n_clusters={k}.")
        parts = C.partitions(X)
        offsets = np.concatenate([[0], np.cumsum(X.chunks[0])]).astype(np.int64)
        if sample_weight is None:
            wparts = [None] * len(parts)
        else:
            import dask.array as da

            w = sample_weight if isinstance(sample_weight, da.Array) else da.from_array(np.asarray(sample_weight, dtype=np.float64))
            if w.ndim != 1 or w.shape[0] != n:
                raise ValueError(f"sample_weight must be 1-D of length {n}, got shape {w.shape}")
            w = w.astype(np.float64).rechunk((X.chunks[0],)).persist()
            wsum, wmin, wfin = dask.compute(w.sum(), w.min(), da.isfinite(w).all())
            if not wfin or wmin < 0 or wsum <= 0:
                raise ValueError("sample_weight must be finite, >= 0 and not all zero")
            wparts = list(np.asarray(w.to_delayed()).ravel())
        self._parts, self._wparts, self._offsets = parts, wparts, offsets
        stats = C.compute([C.delayed(_column_stats)(p) for p in parts])
        shift, var = _merge_stats(stats)
        tol = 0.0 if self.tol == 0 else float(np.mean(var) * self.tol)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        if isinstance(self.init, str):
            runs = [self._init_parallel(X, shift, seed, run) for run in range(int(self.n_init))]
        else:
            init = np.asarray(self.init, dtype=X.dtype)
            if init.shape != (k, d):
                raise ValueError(f"init has shape {init.shape}; expected ({k}, {d}) (n_clusters, n_features)")
            runs = [np.ascontiguousarray(init)]
        best = None
        for centers0 in runs:
            out = self._lloyd(X.dtype, centers0, shift, tol)
            if best is None or out[2] < best[2]:
                best = out
        centers, label_parts, inertia, n_iter = best
        import dask.array as da

        self.cluster_centers_ = centers
        self._n_features_out = k
        self.labels_ = da.concatenate(
            [da.from_delayed(lp, shape=(int(c),), dtype=np.int32) for lp, c in zip(label_parts, X.chunks[0])]
        ).persist()
        self.inertia_ = float(inertia)
        self.n_iter_ = int(n_iter)
        self.n_features_in_ = d
        del self._parts, self._wparts, self._offsets
        return self

    def _init_parallel(self, X, shift, seed, run):
        k = int(self.n_clusters)
        parts, wparts = self._parts, self._wparts
        rng = np.random.default_rng([seed, run])
        # First candidate: one row, uniform over rows (weighted: over weight).
        if wparts[0] is None:
            first = int(rng.integers(X.shape[0]))
        else:
            sums = np.asarray(C.compute([C.delayed(np.sum)(w) for w in wparts]), dtype=np.float64)
            u = rng.random() * sums.sum()
            p = int(np.searchsorted(np.cumsum(sums), u, side="right"))
            p = min(p, len(parts) - 1)
            wl = C.compute([wparts[p]])[0]
            cw = np.cumsum(wl)
            first = int(self._offsets[p] + min(np.searchsorted(cw, u - (sums[:p].sum()), side="right"), len(wl) - 1))
        cand = np.asarray(X[first : first + 1].compute(), dtype=X.dtype)
        ell = float(self.oversampling_factor) * k
        for rnd in range(_PARALLEL_ROUNDS):
            cs = cand.astype(np.float64) - shift
            phi = sum(c for _, c in C.compute([C.delayed(_min_dist)(p, w, cs, shift) for p, w in zip(parts, wparts)]))
            new = C.compute(
                [
                    C.delayed(_sample_round)(p, w, cs, shift, phi, ell, seed, 1000 * run + rnd, i)
                    for i, (p, w) in enumerate(zip(parts, wparts))
                ]
            )
            cand = np.concatenate([cand] + new).astype(X.dtype)
        if len(cand) < k:  # tiny data: top up with uniformly drawn rows
            extra = rng.choice(X.shape[0], size=k, replace=False)
            cand = np.concatenate([cand, np.asarray(X[np.sort(extra)].compute(), dtype=X.dtype)])
        cand = np.ascontiguousarray(cand)
        wc = np.sum(C.compute([C.delayed(_candidate_weights)(p, w, cand) for p, w in zip(parts, wparts)]), axis=0)
        if len(cand) == k:
            return cand
        cshift, ctol = _shift_and_tolerance(cand, 1e-4, 1)
        sel = _core.kmeans_plusplus(cand, wc, k, _n_local_trials(k), cshift, seed, run, 1)
        centers, _, _, _, _ = _core.kmeans_lloyd(cand, wc, np.ascontiguousarray(cand[sel]), cshift, 20, ctol, 1)
        return np.ascontiguousarray(centers, dtype=X.dtype)

    def _lloyd(self, dtype, init, shift, tol):
        """``ferromine_core::kmeans::lloyd`` with each pass a map and a reduce."""
        import dask

        parts, wparts = self._parts, self._wparts
        k = init.shape[0]
        centers = (init.astype(np.float64) - shift).astype(dtype).astype(np.float64)
        prev = [None] * len(parts)
        n_iter = 0
        for it in range(int(self.max_iter)):
            n_iter = it + 1
            steps = [C.delayed(_step)(p, w, centers, shift, lp) for p, w, lp in zip(parts, wparts, prev)]
            steps = list(dask.persist(*steps))
            small = C.compute([C.delayed(operator.getitem)(s, slice(1, None)) for s in steps])
            sums = np.sum([s[0] for s in small], axis=0)
            weights = np.sum([s[1] for s in small], axis=0)
            changed = sum(s[2] for s in small)
            labels = [C.delayed(operator.getitem)(s, 0) for s in steps]
            empty = np.flatnonzero(weights == 0.0)
            if empty.size:
                self._relocate(centers, shift, labels, sums, weights, empty)
            new_centers = _average_centers(sums, weights)
            shift_tot = float(np.sum((centers - new_centers) ** 2))
            centers = new_centers
            if changed == 0:
                break
            if shift_tot <= tol:
                break
            prev = labels
        out = (centers + shift).astype(dtype)
        res = [C.delayed(_assign)(p, w, out) for p, w in zip(parts, wparts)]
        res = list(dask.persist(*res))
        inertia = sum(C.compute([C.delayed(operator.getitem)(r, 1) for r in res]))
        label_parts = [C.delayed(operator.getitem)(r, 0) for r in res]
        return out, label_parts, inertia, n_iter

    def _relocate(self, centers, shift, labels, sums, weights, empty):
        """sklearn's relocation: each empty cluster takes one of the rows
        farthest from their centre (farthest first, lower index on ties)."""
        m = empty.size
        far = C.compute(
            [
                C.delayed(_farthest)(p, w, centers, shift, lp, m, int(off))
                for p, w, lp, off in zip(self._parts, self._wparts, labels, self._offsets)
            ]
        )
        rows = sorted((r for part in far for r in part), key=lambda r: (-r[0], r[1]))[:m]
        if not rows or all(r[0] == 0.0 for r in rows):
            return
        for new_id, (_, _, row, w, old_id) in zip(empty, rows):
            val = row * w
            sums[old_id] -= val
            sums[new_id] = val
            weights[new_id] = w
            weights[old_id] -= w

    def _blocks(self, X, fn, dtype, with_k):
        import dask.array as da

        check_is_fitted(self, "cluster_centers_")
        X = _as_dask_array(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but KMeans is expecting {self.n_features_in_} features as input")
        centers = self.cluster_centers_.astype(X.dtype)
        if with_k:
            return da.map_blocks(fn, X, centers, dtype=dtype, chunks=(X.chunks[0], (centers.shape[0],)))
        return da.map_blocks(fn, X, centers, dtype=dtype, drop_axis=1, chunks=(X.chunks[0],))

    def predict(self, X):
        """Closest centre of each row, as a dask array (int32)."""
        return self._blocks(X, _predict_block, np.int32, False)

    def transform(self, X):
        """Distances to every centre, as a dask array of shape (n, n_clusters)."""
        return self._blocks(X, _transform_block, None, True)

    def fit_predict(self, X, y=None, sample_weight=None):
        return self.fit(X, sample_weight=sample_weight).labels_

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the inertia of X (computed on the cluster)."""
        check_is_fitted(self, "cluster_centers_")
        X = _as_dask_array(X)
        centers = self.cluster_centers_.astype(X.dtype)
        parts = C.partitions(X)
        return -float(sum(r[1] for r in C.compute([C.delayed(_assign)(p, None, centers) for p in parts])))


def _predict_block(x, centers):
    if x.shape[0] == 0:
        return np.zeros(0, np.int32)
    return _core.kmeans_assign(np.ascontiguousarray(x), centers, None, False, 1)[0]


def _transform_block(x, centers):
    if x.shape[0] == 0:
        return np.zeros((0, centers.shape[0]), dtype=x.dtype)
    return _core.kmeans_transform(np.ascontiguousarray(x), centers, 1)
