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
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array, check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _core
from ._threads import resolve_n_jobs

__all__ = ["KMeans", "kmeans_plusplus"]

_FLOATS = [np.float64, np.float32]


# ----------------------------------------------------------------------------
# Checks shared by the estimators.


def _check_int(name: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"The '{name}' parameter of KMeans must be an int in the range [{low}, inf). Got {value!r} instead.")
    if value < low:
        raise ValueError(f"The '{name}' parameter of KMeans must be an int in the range [{low}, inf). Got {value!r} instead.")
    return int(value)


def _check_sample_weight(sample_weight, n_samples: int) -> np.ndarray | None:
    """sklearn's ``_check_sample_weight`` for our needs: float64, 1-D, length n,
    finite, non-negative, not all zero. ``None`` stays ``None`` (unit weights)."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number):
        return np.full(n_samples, float(sample_weight), dtype=np.float64)
    sw = check_array(sample_weight, accept_sparse=False, ensure_2d=False, dtype=np.float64, order="C", input_name="sample_weight")
    if sw.ndim != 1:
        raise ValueError(f"Sample weights must be 1D array or scalar, got {sw.ndim}D array of shape {sw.shape}.")
    if sw.shape[0] != n_samples:
        raise ValueError(f"sample_weight.shape == {sw.shape}, expected ({n_samples},)!")
    if np.any(sw < 0):
        raise ValueError("Negative values in data passed to sample_weight; weights must be >= 0.")
    if not np.any(sw > 0):
        raise ValueError("Sample weights must contain at least one non-zero number; all are zero.")
    return np.ascontiguousarray(sw)


def _is_same_clustering(labels1: np.ndarray, labels2: np.ndarray, n_clusters: int) -> bool:
    """True when the two labellings are equal up to a permutation of labels."""
    mapping = np.full(n_clusters, -1, dtype=np.int64)
    first = np.unique(labels1, return_index=True)[1]
    mapping[labels1[first]] = labels2[first]
    return bool(np.array_equal(mapping[labels1], labels2))


def _shift_and_tolerance(X: np.ndarray, tol: float, n_threads: int) -> tuple[np.ndarray, float]:
    """Column means (the shift that keeps distances accurate, as sklearn's
    centring) and sklearn's tolerance: ``tol`` times the mean feature variance.
    Computed in Rust so they do not depend on X's memory layout."""
    mean, var = _core.kmeans_column_stats(X, n_threads)
    return mean, (0.0 if tol == 0 else float(np.mean(var) * tol))


def _n_local_trials(n_clusters: int) -> int:
    return 2 + int(np.log(n_clusters))


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
    X : array-like of shape (n_samples, n_features)
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
    X = check_array(X, dtype=_FLOATS, order=None)
    n_clusters = _check_int("n_clusters", n_clusters)
    if X.shape[0] < n_clusters:
        raise ValueError(f"n_samples={X.shape[0]} should be >= n_clusters={n_clusters}.")
    sw = _check_sample_weight(sample_weight, X.shape[0])
    trials = _n_local_trials(n_clusters) if n_local_trials is None else _check_int("n_local_trials", n_local_trials)
    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    n_threads = resolve_n_jobs(n_jobs)
    shift, _ = _shift_and_tolerance(X, 0.0, n_threads)
    idx = _core.kmeans_plusplus(X, sw, n_clusters, trials, shift, seed, 0, n_threads)
    return X[idx], idx


class KMeans(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator):
    """K-Means clustering, a drop-in for :class:`sklearn.cluster.KMeans`.

    Same parameters, attributes and results as scikit-learn (Lloyd with
    sklearn's tolerance and strict convergence, empty-cluster relocation, a
    final E-step), plus ``n_jobs``. The same ``random_state`` gives
    bit-identical results for any ``n_jobs``.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters.
    init : {"k-means++", "random"}, callable or array-like of shape (n_clusters, n_features), default="k-means++"
        ``"k-means++"``: greedy k-means++ with ``2 + int(ln k)`` candidates per
        centre. ``"random"``: ``n_clusters`` distinct rows drawn with
        probability proportional to ``sample_weight``. An array: the initial
        centres. A callable ``init(X, n_clusters, random_state) -> centers``.
    n_init : "auto" or int, default="auto"
        Runs with different seeds; the one with the lowest inertia is kept.
        ``"auto"``: 1 for "k-means++" or an array, 10 otherwise.
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
        Both run the same fused Lloyd kernel (identical results).
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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # ------------------------------------------------------------------
    def _check_params(self) -> None:
        _check_int("n_clusters", self.n_clusters)
        _check_int("max_iter", self.max_iter)
        if not (self.n_init == "auto" or (isinstance(self.n_init, numbers.Integral) and not isinstance(self.n_init, bool))):
            raise TypeError(f"The 'n_init' parameter of KMeans must be 'auto' or an int >= 1. Got {self.n_init!r} instead.")
        if self.n_init != "auto" and self.n_init < 1:
            raise ValueError(f"The 'n_init' parameter of KMeans must be 'auto' or an int >= 1. Got {self.n_init!r} instead.")
        if isinstance(self.tol, bool) or not isinstance(self.tol, numbers.Real):
            raise TypeError(f"The 'tol' parameter of KMeans must be a float >= 0. Got {self.tol!r} instead.")
        if not self.tol >= 0:
            raise ValueError(f"The 'tol' parameter of KMeans must be a float >= 0. Got {self.tol!r} instead.")
        if self.algorithm not in ("lloyd", "elkan"):
            raise ValueError(f"The 'algorithm' parameter of KMeans must be 'lloyd' or 'elkan'. Got {self.algorithm!r} instead.")
        init = self.init
        if isinstance(init, str):
            if init not in ("k-means++", "random"):
                raise ValueError(
                    f"The 'init' parameter of KMeans must be 'k-means++', 'random', a callable or an array. Got {init!r} instead."
                )
        elif not callable(init) and not hasattr(init, "__len__") and not hasattr(init, "__array__"):
            raise TypeError(
                f"The 'init' parameter of KMeans must be 'k-means++', 'random', a callable or an array. Got {init!r} instead."
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

    def _n_runs(self) -> int:
        init = self.init
        if self.n_init == "auto":
            n = 1 if (isinstance(init, str) and init == "k-means++") or not (isinstance(init, str) or callable(init)) else 10
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

    def _initial_centers(self, X, sw, shift, seed: int, run: int, init_array, n_threads: int) -> np.ndarray:
        init = self.init
        k = self.n_clusters
        if init_array is not None:
            return init_array
        if isinstance(init, str) and init == "k-means++":
            idx = _core.kmeans_plusplus(X, sw, k, _n_local_trials(k), shift, seed, run, n_threads)
            return np.ascontiguousarray(X[idx])
        # Per-run generators derived from the one seed: independent of threads.
        rs = np.random.RandomState(np.random.SeedSequence([seed, run]).generate_state(1)[0])
        if isinstance(init, str) and init == "random":
            p = None if sw is None else sw / sw.sum()
            idx = rs.choice(X.shape[0], size=k, replace=False, p=p)
            return np.ascontiguousarray(X[idx])
        centers = init(X, k, random_state=rs)
        centers = check_array(centers, dtype=X.dtype, copy=False, order="C")
        self._validate_center_shape(X, centers)
        return centers

    def fit(self, X, y=None, sample_weight=None) -> KMeans:
        """Compute k-means clustering.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; float32 stays float32, other numbers become float64.
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples (used by k-means++/random init, the centre
            means and the inertia; not by an array or callable init).

        Returns
        -------
        self : KMeans
        """
        self._check_params()
        X = validate_data(self, X, dtype=_FLOATS, reset=True)
        n, _ = X.shape
        if n < self.n_clusters:
            raise ValueError(f"n_samples={n} should be >= n_clusters={self.n_clusters}.")
        n_runs = self._n_runs()
        n_threads = resolve_n_jobs(self.n_jobs)
        sw = _check_sample_weight(sample_weight, n)
        init_array = None
        if not isinstance(self.init, str) and not callable(self.init):
            init_array = check_array(self.init, dtype=X.dtype, copy=True, order="C", input_name="init")
            self._validate_center_shape(X, init_array)
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
                X, sw, centers0, shift, int(self.max_iter), tol, n_threads
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

    # ------------------------------------------------------------------
    def _check_test_data(self, X) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=_FLOATS, reset=False)
        centers = np.ascontiguousarray(self.cluster_centers_, dtype=X.dtype)
        return X, centers

    def predict(self, X) -> np.ndarray:
        """Index (int32) of the closest cluster centre of each sample."""
        X, centers = self._check_test_data(X)
        labels, _ = _core.kmeans_assign(X, centers, None, False, resolve_n_jobs(self.n_jobs))
        return labels

    def fit_predict(self, X, y=None, sample_weight=None) -> np.ndarray:
        """Fit, then return ``labels_``."""
        return self.fit(X, sample_weight=sample_weight).labels_

    def transform(self, X) -> np.ndarray:
        """Euclidean distance of each sample to each centre, (n_samples, n_clusters)."""
        X, centers = self._check_test_data(X)
        return _core.kmeans_transform(X, centers, resolve_n_jobs(self.n_jobs))

    def fit_transform(self, X, y=None, sample_weight=None) -> np.ndarray:
        """Fit, then :meth:`transform` X."""
        return self.fit(X, sample_weight=sample_weight).transform(X)

    def score(self, X, y=None, sample_weight=None) -> float:
        """Opposite of the (weighted) inertia of X against the fitted centres."""
        X, centers = self._check_test_data(X)
        sw = _check_sample_weight(sample_weight, X.shape[0])
        _, inertia = _core.kmeans_assign(X, centers, sw, True, resolve_n_jobs(self.n_jobs))
        return -float(inertia)
