"""k-means clustering (scikit-learn compatible); public names in :mod:`ferromine.cluster`.

This module validates parameters and data, draws seeds, chooses the initial
centres and keeps the best of ``n_init`` runs. The Rust kernels do the work:
greedy k-means++ seeding, Lloyd iterations (a fused distance / argmin /
centre-sum pass over fixed chunks of 256 rows), assignment, inertia and
distances. Results are bit-identical for any ``n_jobs``.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array, check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _core
from ._intake import check_sample_weight
from ._threads import resolve_n_jobs

__all__ = ["KMeans", "MiniBatchKMeans", "kmeans_plusplus"]

_FLOATS = [np.float64, np.float32]


def _core_x(X):
    """X as the Rust kernels take it: the array, or a CSR matrix as
    ``(data, indices, indptr, n_features)`` (int64 indices; never densified)."""
    if sp.issparse(X):
        return (
            np.ascontiguousarray(X.data),
            np.ascontiguousarray(X.indices, dtype=np.int64),
            np.ascontiguousarray(X.indptr, dtype=np.int64),
            X.shape[1],
        )
    return X


def _rows(X, idx) -> np.ndarray:
    """Rows ``idx`` of X as a dense C-contiguous array in X's dtype."""
    out = X[idx]
    if sp.issparse(out):
        out = out.toarray()
    return np.ascontiguousarray(out, dtype=X.dtype)


# ----------------------------------------------------------------------------
# Checks shared by the estimators.


def _check_int(name: str, value: Any, low: int = 1, est: str = "KMeans") -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"The '{name}' parameter of {est} must be an int in the range [{low}, inf). Got {value!r} instead.")
    if value < low:
        raise ValueError(f"The '{name}' parameter of {est} must be an int in the range [{low}, inf). Got {value!r} instead.")
    return int(value)


def _is_same_clustering(labels1: np.ndarray, labels2: np.ndarray, n_clusters: int) -> bool:
    """True when the two labellings are equal up to a permutation of labels."""
    mapping = np.full(n_clusters, -1, dtype=np.int64)
    first = np.unique(labels1, return_index=True)[1]
    mapping[labels1[first]] = labels2[first]
    return bool(np.array_equal(mapping[labels1], labels2))


def _shift_and_tolerance(X: np.ndarray, tol: float, n_threads: int) -> tuple[np.ndarray, float]:
    """Column means (the shift that keeps distances accurate, as sklearn's
    centring) and sklearn's tolerance: ``tol`` times the mean feature variance.
    Computed in Rust so they do not depend on X's memory layout; the
    variances (a second pass over X) only when ``tol`` needs them."""
    mean, var = _core.kmeans_column_stats(_core_x(X), n_threads, tol != 0)
    return mean, (0.0 if tol == 0 else float(np.mean(var) * tol))


def _n_local_trials(n_clusters: int) -> int:
    return 2 + int(np.log(n_clusters))


_PARALLEL_ROUNDS = 5


def _kmeans_parallel_init(X, sw, k: int, seed: int, stream: int, n_threads: int) -> np.ndarray:
    """k-means|| (scalable k-means++): ~``2k`` candidates drawn in each of 5
    rounds (Rust, thread-count independent), reduced to ``k`` centres by
    weighted greedy k-means++ and a short weighted Lloyd on the candidates."""
    shift, _ = _shift_and_tolerance(X, 0.0, n_threads)
    idx, wc = _core.kmeans_parallel(_core_x(X), sw, k, _PARALLEL_ROUNDS, 2.0 * k, shift, seed, stream, n_threads)
    Xc = _rows(X, idx)
    cshift, ctol = _shift_and_tolerance(Xc, 1e-4, n_threads)
    sel = _core.kmeans_plusplus(Xc, wc, k, _n_local_trials(k), cshift, seed, stream, n_threads)
    if len(Xc) == k:
        return np.ascontiguousarray(Xc[sel])
    centers, _, _, _, _ = _core.kmeans_lloyd(Xc, wc, np.ascontiguousarray(Xc[sel]), cshift, 20, ctol, n_threads)
    return np.ascontiguousarray(centers, dtype=X.dtype)


def kmeans_plusplus(
    X,
    n_clusters: int,
    *,
    sample_weight=None,
    x_squared_norms=None,
    random_state=None,
    n_local_trials: int | None = None,
    n_jobs: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-means++ seeding, as :func:`sklearn.cluster.kmeans_plusplus`.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        Data to pick seeds from (float32 stays float32).
    n_clusters : int
        Number of centres to pick.
    sample_weight : array-like of shape (n_samples,), default=None
        Weights; a row is drawn with probability proportional to
        ``sample_weight * D^2``.
    x_squared_norms : ignored
        Accepted for compatibility; norms are computed internally.
    random_state : int, RandomState instance or None, default=None
        Seed of the draws.
    n_local_trials : int, default=None
        Candidates per centre; ``2 + int(ln(n_clusters))`` when None.
    n_jobs : int, default=None
        Threads (see :func:`ferromine.get_num_threads`).

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features)
    indices : ndarray of shape (n_clusters,)
        Row index of each centre in ``X``.
    """
    X = check_array(X, accept_sparse="csr", dtype=_FLOATS, order=None)
    n_clusters = _check_int("n_clusters", n_clusters)
    if X.shape[0] < n_clusters:
        raise ValueError(f"n_samples={X.shape[0]} should be >= n_clusters={n_clusters}.")
    sw = check_sample_weight(sample_weight, X.shape[0])
    trials = _n_local_trials(n_clusters) if n_local_trials is None else _check_int("n_local_trials", n_local_trials)
    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    n_threads = resolve_n_jobs(n_jobs)
    shift, _ = _shift_and_tolerance(X, 0.0, n_threads)
    idx = _core.kmeans_plusplus(_core_x(X), sw, n_clusters, trials, shift, seed, 0, n_threads)
    return _rows(X, idx), idx


class _BaseKMeans(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator):
    """What KMeans and MiniBatchKMeans share: parameter checks, init shape
    checks and the methods of a fitted model (predict, transform, score)."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.input_tags.sparse = True
        return tags

    def _check_common_params(self) -> None:
        est = type(self).__name__
        _check_int("n_clusters", self.n_clusters, est=est)
        _check_int("max_iter", self.max_iter, est=est)
        if not (self.n_init == "auto" or (isinstance(self.n_init, numbers.Integral) and not isinstance(self.n_init, bool))):
            raise TypeError(f"The 'n_init' parameter of {est} must be 'auto' or an int >= 1. Got {self.n_init!r} instead.")
        if self.n_init != "auto" and self.n_init < 1:
            raise ValueError(f"The 'n_init' parameter of {est} must be 'auto' or an int >= 1. Got {self.n_init!r} instead.")
        if isinstance(self.tol, bool) or not isinstance(self.tol, numbers.Real):
            raise TypeError(f"The 'tol' parameter of {est} must be a float >= 0. Got {self.tol!r} instead.")
        if not self.tol >= 0:
            raise ValueError(f"The 'tol' parameter of {est} must be a float >= 0. Got {self.tol!r} instead.")
        init = self.init
        if isinstance(init, str):
            if init not in ("k-means++", "k-means||", "random"):
                raise ValueError(
                    f"The 'init' parameter of {est} must be 'k-means++', 'k-means||', 'random', a callable or an array. "
                    f"Got {init!r} instead."
                )
        elif not callable(init) and not hasattr(init, "__len__") and not hasattr(init, "__array__"):
            raise TypeError(
                f"The 'init' parameter of {est} must be 'k-means++', 'k-means||', 'random', a callable or an array. "
                f"Got {init!r} instead."
            )

    def _validate_center_shape(self, X: np.ndarray, centers: np.ndarray) -> None:
        if centers.shape[0] != self.n_clusters:
            raise ValueError(
                f"The shape of the initial centers {centers.shape} does not match the number of clusters {self.n_clusters}."
            )
        if centers.shape[1] != X.shape[1]:
            raise ValueError(
                f"The shape of the initial centers {centers.shape} does not match the number of features of the data {X.shape[1]}."
            )

    def _n_runs(self, default: int = 10) -> int:
        init = self.init
        if self.n_init == "auto":
            seeded = isinstance(init, str) and init in ("k-means++", "k-means||")
            n = 1 if seeded or not (isinstance(init, str) or callable(init)) else default
        else:
            n = int(self.n_init)
        if not isinstance(init, str) and not callable(init) and n != 1:
            warnings.warn(
                f"Explicit initial center position passed: performing only one init in {type(self).__name__} instead of n_init={n}.",
                RuntimeWarning,
                stacklevel=3,
            )
            n = 1
        return n

    def _init_array(self, X: np.ndarray) -> np.ndarray | None:
        """The explicit init array (validated, in X's dtype), or None."""
        if isinstance(self.init, str) or callable(self.init):
            return None
        init_array = check_array(self.init, dtype=X.dtype, copy=True, order="C", input_name="init")
        self._validate_center_shape(X, init_array)
        return init_array

    # ------------------------------------------------------------------
    def _check_test_data(self, X) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", dtype=_FLOATS, reset=False)
        centers = np.ascontiguousarray(self.cluster_centers_, dtype=X.dtype)
        return X, centers

    def predict(self, X) -> np.ndarray:
        """Index (int32) of the closest cluster centre of each sample."""
        X, centers = self._check_test_data(X)
        labels, _ = _core.kmeans_assign(_core_x(X), centers, None, False, resolve_n_jobs(self.n_jobs))
        return labels

    def fit_predict(self, X, y=None, sample_weight=None) -> np.ndarray:
        """Fit, then return ``labels_``."""
        return self.fit(X, sample_weight=sample_weight).labels_

    def transform(self, X) -> np.ndarray:
        """Euclidean distance of each sample to each centre, (n_samples, n_clusters)."""
        X, centers = self._check_test_data(X)
        return _core.kmeans_transform(_core_x(X), centers, resolve_n_jobs(self.n_jobs))

    def fit_transform(self, X, y=None, sample_weight=None) -> np.ndarray:
        """Fit, then :meth:`transform` X."""
        return self.fit(X, sample_weight=sample_weight).transform(X)

    def score(self, X, y=None, sample_weight=None) -> float:
        """Opposite of the (weighted) inertia of X against the fitted centres."""
        X, centers = self._check_test_data(X)
        sw = check_sample_weight(sample_weight, X.shape[0])
        _, inertia = _core.kmeans_assign(_core_x(X), centers, sw, True, resolve_n_jobs(self.n_jobs))
        return -float(inertia)


class KMeans(_BaseKMeans):
    """K-Means clustering, a drop-in for :class:`sklearn.cluster.KMeans`.

    Same parameters, attributes and results as scikit-learn (Lloyd with
    sklearn's tolerance and strict convergence, empty-cluster relocation, a
    final E-step), plus ``n_jobs``. The same ``random_state`` gives
    bit-identical results for any ``n_jobs``.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters.
    init : {"k-means++", "k-means||", "random"}, callable or array-like of shape (n_clusters, n_features), default="k-means++"
        ``"k-means++"``: greedy k-means++ with ``2 + int(ln k)`` candidates per
        centre. ``"k-means||"``: scalable k-means++ (Bahmani et al.): 5
        rounds drawing about ``2 * n_clusters`` rows each with probability
        proportional to ``sample_weight * D^2``, then weighted k-means++ and
        a short Lloyd on those candidates (not in scikit-learn). ``"random"``: ``n_clusters`` distinct rows drawn with
        probability proportional to ``sample_weight``. An array: the initial
        centres. A callable ``init(X, n_clusters, random_state) -> centers``.
    n_init : "auto" or int, default="auto"
        Runs with different seeds; the one with the lowest inertia is kept.
        ``"auto"``: 1 for "k-means++", "k-means||" or an array, 10 otherwise.
    max_iter : int, default=300
        Maximum Lloyd iterations per run.
    tol : float, default=1e-4
        Stop when the squared centre shift is at most ``tol`` times the mean
        feature variance of X.
    verbose : int, default=0
        Print progress.
    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation.
    copy_x : bool, default=True
        Accepted for compatibility; X is never modified.
    algorithm : {"lloyd", "elkan"}, default="lloyd"
        ``"lloyd"``: every iteration computes all n * k distances with the
        fused kernel. ``"elkan"``: Hamerly's bounds skip the rows whose
        closest centre provably did not change; the labels, centres, inertia
        and ``n_iter_`` are bit-identical to ``"lloyd"``'s (an exact
        acceleration, faster once centres settle).
    n_jobs : int, default=None
        Threads: None uses ``FERROMINE_NUM_THREADS``/``OMP_NUM_THREADS`` or
        all physical cores; -1 all cores.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        In X's dtype.
    labels_ : ndarray of shape (n_samples,), int32
    inertia_ : float
        Weighted sum of squared distances of samples to their closest centre.
    n_iter_ : int
        Iterations of the best run.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when X has string column names.
    """

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init: str | Callable | np.ndarray = "k-means++",
        n_init: str | int = "auto",
        max_iter: int = 300,
        tol: float = 1e-4,
        verbose: int = 0,
        random_state=None,
        copy_x: bool = True,
        algorithm: str = "lloyd",
        n_jobs: int | None = None,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose
        self.random_state = random_state
        self.copy_x = copy_x
        self.algorithm = algorithm
        self.n_jobs = n_jobs

    def _check_params(self) -> None:
        self._check_common_params()
        if self.algorithm not in ("lloyd", "elkan"):
            raise ValueError(f"The 'algorithm' parameter of KMeans must be 'lloyd' or 'elkan'. Got {self.algorithm!r} instead.")

    def _initial_centers(self, X, sw, shift, seed: int, run: int, init_array, n_threads: int) -> np.ndarray:
        init = self.init
        k = self.n_clusters
        if init_array is not None:
            return init_array
        if isinstance(init, str) and init == "k-means++":
            idx = _core.kmeans_plusplus(_core_x(X), sw, k, _n_local_trials(k), shift, seed, run, n_threads)
            return _rows(X, idx)
        if isinstance(init, str) and init == "k-means||":
            return _kmeans_parallel_init(X, sw, k, seed, run, n_threads)
        # Per-run generators derived from the one seed: independent of threads.
        rs = np.random.RandomState(np.random.SeedSequence([seed, run]).generate_state(1)[0])
        if isinstance(init, str) and init == "random":
            p = None if sw is None else sw / sw.sum()
            idx = rs.choice(X.shape[0], size=k, replace=False, p=p)
            return _rows(X, idx)
        centers = init(X, k, random_state=rs)
        if sp.issparse(centers):
            centers = centers.toarray()
        centers = check_array(centers, dtype=X.dtype, copy=False, order="C")
        self._validate_center_shape(X, centers)
        return centers

    def fit(self, X, y=None, sample_weight=None) -> KMeans:
        """Compute k-means clustering.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data; float32 stays float32, other numbers become float64.
            Sparse input is used as CSR, read chunk by chunk (never densified).
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples (used by k-means++/random init, the centre
            means and the inertia; not by an array or callable init).

        Returns
        -------
        self : KMeans
        """
        self._check_params()
        X = validate_data(self, X, accept_sparse="csr", dtype=_FLOATS, reset=True)
        n, _ = X.shape
        if n < self.n_clusters:
            raise ValueError(f"n_samples={n} should be >= n_clusters={self.n_clusters}.")
        n_runs = self._n_runs()
        n_threads = resolve_n_jobs(self.n_jobs)
        sw = check_sample_weight(sample_weight, n)
        init_array = self._init_array(X)
        # One seed for the whole fit; run i derives its own stream from it.
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        # sklearn centres X for accurate distances; we shift on the fly instead of copying X.
        shift, tol = _shift_and_tolerance(X, float(self.tol), n_threads)

        best = None
        for run in range(n_runs):
            centers0 = self._initial_centers(X, sw, shift, seed, run, init_array, n_threads)
            if self.verbose:
                print("Initialization complete")
            centers, labels, inertia, n_iter, strict = _core.kmeans_lloyd(
                _core_x(X), sw, centers0, shift, int(self.max_iter), tol, n_threads, self.algorithm == "elkan"
            )
            if self.verbose:
                how = "strict convergence" if strict else "stopped"
                print(f"Run {run}: {n_iter} iterations ({how}), inertia {inertia}.")
            # A later run wins only with lower inertia *and* a different labelling (as sklearn).
            if best is None or (inertia < best[2] and not _is_same_clustering(labels, best[1], self.n_clusters)):
                best = (centers, labels, inertia, n_iter)

        centers, labels, inertia, n_iter = best
        distinct = len(np.unique(labels))
        if distinct < self.n_clusters:
            warnings.warn(
                f"Number of distinct clusters ({distinct}) found smaller than n_clusters ({self.n_clusters}). "
                "Possibly due to duplicate points in X.",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.cluster_centers_ = centers
        self._n_features_out = self.cluster_centers_.shape[0]
        self.labels_ = labels
        self.inertia_ = float(inertia)
        self.n_iter_ = int(n_iter)
        return self


# ----------------------------------------------------------------------------
# Mini-batch k-means.


def _cluster_sums(Xb: np.ndarray, w: np.ndarray | None, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster weighted sums (k, d) and weights (k,) of a batch, float64.
    ``bincount`` adds in row order, so the result does not depend on threads."""
    wb = np.ones(len(labels)) if w is None else w
    wsum = np.bincount(labels, weights=wb, minlength=k)
    Xw = Xb.astype(np.float64) if w is None else Xb * wb[:, None]
    sums = np.empty((k, Xb.shape[1]))
    for f in range(Xb.shape[1]):
        sums[:, f] = np.bincount(labels, weights=Xw[:, f], minlength=k)
    return sums, wsum


class MiniBatchKMeans(_BaseKMeans):
    """Mini-batch k-means, a drop-in for :class:`sklearn.cluster.MiniBatchKMeans`.

    Same parameters, stopping rules and update as scikit-learn, plus
    ``n_jobs``: each step draws ``batch_size`` rows (with replacement, with
    probability proportional to ``sample_weight``), assigns them with the Rust
    kernel and moves every centre towards the mean of its new rows with a
    per-centre learning rate ``1 / count``. Centres with a low count are
    reassigned to random batch rows. Given an int ``random_state``, the rows
    drawn are those scikit-learn draws, and results are bit-identical for any
    ``n_jobs``.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters.
    init : {"k-means++", "k-means||", "random"}, callable or array-like of shape (n_clusters, n_features), default="k-means++"
        As :class:`KMeans`, applied to ``init_size`` random rows.
    max_iter : int, default=100
        Maximum passes over the data (``max_iter * n_samples / batch_size``
        steps).
    batch_size : int, default=1024
        Rows per mini-batch.
    verbose : int, default=0
        Print progress.
    compute_labels : bool, default=True
        Compute ``labels_`` and ``inertia_`` on the full data after fitting.
    random_state : int, RandomState instance or None, default=None
        Seed of the init, the batches and the reassignments.
    tol : float, default=0.0
        Stop when the squared centre change of a step is at most ``tol``
        times the mean feature variance (0 disables it).
    max_no_improvement : int or None, default=10
        Stop after this many steps without improvement of the smoothed
        (exponentially weighted) batch inertia; None disables it.
    init_size : int, default=None
        Rows used for the init (default ``3 * batch_size``, at least
        ``3 * n_clusters``).
    n_init : "auto" or int, default="auto"
        Inits tried; the best on a validation subset is kept. ``"auto"``: 1
        for "k-means++", "k-means||" or an array, 3 otherwise.
    reassignment_ratio : float, default=0.01
        Centres whose count is below this fraction of the largest count are
        reassigned.
    n_jobs : int, default=None
        Threads (see :class:`KMeans`).

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        In X's dtype.
    labels_ : ndarray of shape (n_samples,), int32
        Only when ``compute_labels``.
    inertia_ : float
        Inertia on the full data if ``compute_labels``, else the smoothed
        batch inertia times the total weight.
    n_iter_ : int
        Passes over the data.
    n_steps_ : int
        Mini-batches processed.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when X has string column names.
    """

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init: str | Callable | np.ndarray = "k-means++",
        max_iter: int = 100,
        batch_size: int = 1024,
        verbose: int = 0,
        compute_labels: bool = True,
        random_state=None,
        tol: float = 0.0,
        max_no_improvement: int | None = 10,
        init_size: int | None = None,
        n_init: str | int = "auto",
        reassignment_ratio: float = 0.01,
        n_jobs: int | None = None,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.verbose = verbose
        self.compute_labels = compute_labels
        self.random_state = random_state
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.init_size = init_size
        self.n_init = n_init
        self.reassignment_ratio = reassignment_ratio
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------
    def _check_params(self) -> None:
        est = "MiniBatchKMeans"
        self._check_common_params()
        _check_int("batch_size", self.batch_size, est=est)
        if self.max_no_improvement is not None:
            _check_int("max_no_improvement", self.max_no_improvement, low=0, est=est)
        if self.init_size is not None:
            _check_int("init_size", self.init_size, est=est)
        if not isinstance(self.compute_labels, (bool, np.bool_)):
            raise TypeError(f"The 'compute_labels' parameter of {est} must be a bool. Got {self.compute_labels!r} instead.")
        r = self.reassignment_ratio
        if isinstance(r, bool) or not isinstance(r, numbers.Real):
            raise TypeError(f"The 'reassignment_ratio' parameter of {est} must be a float >= 0. Got {r!r} instead.")
        if not r >= 0:
            raise ValueError(f"The 'reassignment_ratio' parameter of {est} must be a float >= 0. Got {r!r} instead.")

    def _check_params_vs_input(self, X: np.ndarray, n_threads: int) -> None:
        """sklearn's sizes: batch size, init size, absolute tolerance."""
        n = X.shape[0]
        if n < self.n_clusters:
            raise ValueError(f"n_samples={n} should be >= n_clusters={self.n_clusters}.")
        _, self._tol = _shift_and_tolerance(X, float(self.tol), n_threads)
        self._n_init = self._n_runs(default=3)
        self._batch_size = min(int(self.batch_size), n)
        init_size = self.init_size
        if init_size is None:
            init_size = 3 * self._batch_size
            if init_size < self.n_clusters:
                init_size = 3 * self.n_clusters
        elif init_size < self.n_clusters:
            warnings.warn(
                f"init_size={init_size} should be larger than n_clusters={self.n_clusters}. "
                "Setting it to min(3*n_clusters, n_samples)",
                RuntimeWarning,
                stacklevel=3,
            )
            init_size = 3 * self.n_clusters
        self._init_size = min(init_size, n)

    def _init_centroids(self, X, sw, rs: np.random.RandomState, init_array, n_threads: int) -> np.ndarray:
        """Initial centres from ``init_size`` rows drawn with ``rs`` (as sklearn)."""
        k = self.n_clusters
        init = self.init
        if self._init_size < X.shape[0]:
            idx = rs.randint(0, X.shape[0], self._init_size)
            X = _rows(X, idx)
            sw = None if sw is None else sw[idx]
        if init_array is not None:
            return init_array
        if isinstance(init, str) and init == "k-means++":
            seed = int(rs.randint(np.iinfo(np.int32).max))
            shift, _ = _shift_and_tolerance(X, 0.0, n_threads)
            idx = _core.kmeans_plusplus(_core_x(X), sw, k, _n_local_trials(k), shift, seed, 0, n_threads)
            return _rows(X, idx)
        if isinstance(init, str) and init == "k-means||":
            return _kmeans_parallel_init(X, sw, k, int(rs.randint(np.iinfo(np.int32).max)), 0, n_threads)
        if isinstance(init, str) and init == "random":
            w = np.ones(X.shape[0]) if sw is None else sw
            idx = rs.choice(X.shape[0], size=k, replace=False, p=w / w.sum())
            return _rows(X, idx)
        centers = init(X, k, random_state=rs)
        if sp.issparse(centers):
            centers = centers.toarray()
        centers = check_array(centers, dtype=X.dtype, copy=False, order="C")
        self._validate_center_shape(X, centers)
        return centers

    def _random_reassign(self) -> bool:
        """Reassign every ``10 * n_clusters`` rows seen, or when a count is 0."""
        self._n_since_last_reassign += self._batch_size
        if (self._counts == 0).any() or self._n_since_last_reassign >= 10 * self.n_clusters:
            self._n_since_last_reassign = 0
            return True
        return False

    def _mini_batch_step(self, Xb, w, centers, rs, random_reassign: bool, n_threads: int) -> tuple[np.ndarray, float]:
        """One step on batch ``Xb``: assign (Rust), move each centre to the
        weighted mean of its old position (weight = its count) and its new
        rows, then reassign low-count centres. Updates ``self._counts``;
        returns the new centres (X's dtype) and the batch inertia measured
        before the update."""
        k = self.n_clusters
        labels, inertia = _core.kmeans_assign(Xb, centers, w, True, n_threads)
        sums, wsum = _cluster_sums(Xb, w, labels, k)
        counts = self._counts
        new = centers.astype(np.float64)
        hit = wsum > 0
        total = counts[hit] + wsum[hit]
        new[hit] = (new[hit] * counts[hit, None] + sums[hit]) * (1.0 / total)[:, None]
        counts[hit] = total
        new = new.astype(Xb.dtype)
        if random_reassign and self.reassignment_ratio > 0:
            to_reassign = counts < self.reassignment_ratio * counts.max()
            # At most half a batch of centres move at once.
            if to_reassign.sum() > 0.5 * Xb.shape[0]:
                to_reassign[np.argsort(counts)[int(0.5 * Xb.shape[0]) :]] = False
            n_reassigns = int(to_reassign.sum())
            if n_reassigns:
                picks = rs.choice(Xb.shape[0], replace=False, size=n_reassigns)
                if self.verbose:
                    print(f"[MiniBatchKMeans] Reassigning {n_reassigns} cluster centers.")
                new[to_reassign] = Xb[picks]
            # Not reset to 0 (they would be reassigned at once): the smallest kept count.
            if n_reassigns and (~to_reassign).any():
                counts[to_reassign] = counts[~to_reassign].min()
        return np.ascontiguousarray(new), float(inertia)

    def _converged(self, step: int, n_steps: int, n_samples: int, centers_squared_diff: float, batch_inertia: float) -> bool:
        """sklearn's early stopping: centre change below tol, or no
        improvement of the exponentially weighted batch inertia."""
        batch_inertia /= self._batch_size
        step += 1
        if step == 1:  # the first inertia measures the init
            if self.verbose:
                print(f"Minibatch step {step}/{n_steps}: mean batch inertia: {batch_inertia}")
            return False
        if self._ewa_inertia is None:
            self._ewa_inertia = batch_inertia
        else:
            alpha = min(self._batch_size * 2.0 / (n_samples + 1), 1.0)
            self._ewa_inertia = self._ewa_inertia * (1 - alpha) + batch_inertia * alpha
        if self.verbose:
            print(f"Minibatch step {step}/{n_steps}: mean batch inertia: {batch_inertia}, ewa inertia: {self._ewa_inertia}")
        if self._tol > 0.0 and centers_squared_diff <= self._tol:
            if self.verbose:
                print(f"Converged (small centers change) at step {step}/{n_steps}")
            return True
        if self._ewa_inertia_min is None or self._ewa_inertia < self._ewa_inertia_min:
            self._no_improvement = 0
            self._ewa_inertia_min = self._ewa_inertia
        else:
            self._no_improvement += 1
        if self.max_no_improvement is not None and self._no_improvement >= self.max_no_improvement:
            if self.verbose:
                print(f"Converged (lack of improvement in inertia) at step {step}/{n_steps}")
            return True
        return False

    # ------------------------------------------------------------------
    def fit(self, X, y=None, sample_weight=None) -> MiniBatchKMeans:
        """Compute the centres on X by mini-batches.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data; float32 stays float32, other numbers become float64.
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Weights: rows are drawn into batches with probability
            proportional to them; not used by an array or callable init.

        Returns
        -------
        self : MiniBatchKMeans
        """
        self._check_params()
        X = validate_data(self, X, accept_sparse="csr", dtype=_FLOATS, reset=True)
        n_threads = resolve_n_jobs(self.n_jobs)
        self._check_params_vs_input(X, n_threads)
        rs = check_random_state(self.random_state)
        n = X.shape[0]
        sw = check_sample_weight(sample_weight, n)
        sw_full = np.ones(n) if sw is None else sw
        init_array = self._init_array(X)

        # Validation rows on which the inits compete (sklearn's draw order).
        valid = rs.randint(0, n, self._init_size)
        X_valid, sw_valid = _rows(X, valid), (None if sw is None else sw[valid])
        best_inertia = None
        for i in range(self._n_init):
            if self.verbose:
                print(f"Init {i + 1}/{self._n_init} with method {self.init}")
            centers = self._init_centroids(X, sw, rs, init_array, n_threads)
            _, inertia = _core.kmeans_assign(X_valid, centers, sw_valid, True, n_threads)
            if self.verbose:
                print(f"Inertia for init {i + 1}/{self._n_init}: {inertia}")
            if best_inertia is None or inertia < best_inertia:
                init_centers, best_inertia = centers, inertia
        centers = np.ascontiguousarray(init_centers, dtype=X.dtype)

        self._counts = np.zeros(self.n_clusters, dtype=np.float64)
        self._ewa_inertia = None
        self._ewa_inertia_min = None
        self._no_improvement = 0
        self._n_since_last_reassign = 0
        sum_of_weights = float(np.sum(sw_full))
        n_steps = (int(self.max_iter) * n) // self._batch_size
        # Batches drawn as RandomState.choice(n, b, p=w/sum(w)) draws them
        # (same stream), with the cumulative weights computed once.
        p = (sw_full.astype(X.dtype) / np.sum(sw_full.astype(X.dtype))).astype(np.float64)
        cdf = np.cumsum(p)
        cdf /= cdf[-1]
        step = 0
        for step in range(n_steps):
            idx = cdf.searchsorted(rs.random_sample(self._batch_size), side="right")
            Xb = _rows(X, idx)  # a dense batch, also for CSR input
            # Batches are weight-aware draws, so the step uses unit weights.
            new, batch_inertia = self._mini_batch_step(Xb, None, centers, rs, self._random_reassign(), n_threads)
            diff = float(np.sum((new.astype(np.float64) - centers) ** 2)) if self._tol > 0.0 else 0.0
            centers = new
            if self._converged(step, n_steps, n, diff, batch_inertia):
                break

        self.cluster_centers_ = centers
        self._n_features_out = centers.shape[0]
        self.n_steps_ = step + 1
        self.n_iter_ = int(np.ceil((step + 1) * self._batch_size / n))
        # Seed of later partial_fit calls, drawn after the fit's own draws.
        self._seed = int(rs.randint(np.iinfo(np.int32).max))
        if self.compute_labels:
            labels, inertia = _core.kmeans_assign(_core_x(X), centers, sw, True, n_threads)
            self.labels_, self.inertia_ = labels, float(inertia)
        else:
            ewa = self._ewa_inertia if self._ewa_inertia is not None else batch_inertia / self._batch_size
            self.inertia_ = float(ewa * sum_of_weights)
        return self

    def partial_fit(self, X, y=None, sample_weight=None) -> MiniBatchKMeans:
        """Update the centres with one mini-batch X.

        The first call (on an unfitted estimator) checks the parameters,
        initialises the centres from X and fixes ``n_features_in_``; later
        calls must have the same features.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The batch.
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the batch rows.

        Returns
        -------
        self : MiniBatchKMeans
        """
        self._check_params()
        has_centers = hasattr(self, "cluster_centers_")
        X = validate_data(self, X, accept_sparse="csr", dtype=_FLOATS, reset=not has_centers)
        if sp.issparse(X):
            X = X.toarray()  # one batch: the update works on dense rows
        n_threads = resolve_n_jobs(self.n_jobs)
        sw = check_sample_weight(sample_weight, X.shape[0])
        self.n_steps_ = getattr(self, "n_steps_", 0)
        if not has_centers:
            self._check_params_vs_input(X, n_threads)
            self._seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        # One generator per call, derived from (seed, step): no RNG is kept
        # on the estimator, and the result depends only on the batches.
        rs = np.random.RandomState(np.random.SeedSequence([self._seed, self.n_steps_]).generate_state(1)[0])
        if not has_centers:
            init_array = self._init_array(X)
            self.cluster_centers_ = self._init_centroids(X, sw, rs, init_array, n_threads)
            self._counts = np.zeros(self.n_clusters, dtype=np.float64)
            self._n_since_last_reassign = 0
        centers = np.ascontiguousarray(self.cluster_centers_, dtype=X.dtype)
        self.cluster_centers_, _ = self._mini_batch_step(X, sw, centers, rs, self._random_reassign(), n_threads)
        if self.compute_labels:
            labels, inertia = _core.kmeans_assign(X, self.cluster_centers_, sw, True, n_threads)
            self.labels_, self.inertia_ = labels, float(inertia)
        self.n_steps_ += 1
        self._n_features_out = self.cluster_centers_.shape[0]
        return self
