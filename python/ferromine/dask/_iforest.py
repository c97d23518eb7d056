"""Isolation forest on dask arrays: fit on a uniform sample, score by partition."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.utils import check_random_state

from ..iforest import IsolationForest as _IsolationForest
from ..iforest import _is_int
from . import _common as C
from ._kmeans import _as_dask_array


def _block(model, method, x):
    """``model.<method>(x)`` on one NumPy block (empty blocks stay empty)."""
    if x.shape[0] == 0:
        return np.zeros(0, dtype=np.int64 if method == "predict" else x.dtype)
    # A block from another process can sit misaligned in its buffer.
    return getattr(_IsolationForest, method)(model, np.require(x, requirements="A"))


def map_scores(model, X, method: str = "score_samples"):
    """``score_samples``, ``decision_function`` or ``predict`` of a fitted
    single-machine :class:`ferromine.ensemble.IsolationForest` over a dask
    array, one task per row chunk; returns a dask array."""
    import dask.array as da

    if method not in ("score_samples", "decision_function", "predict"):
        raise ValueError(f"method must be 'score_samples', 'decision_function' or 'predict', got {method!r}")
    X = _as_dask_array(X)
    dtype = np.int64 if method == "predict" else X.dtype
    return da.map_blocks(_block, model, method, X, dtype=dtype, drop_axis=1, chunks=(X.chunks[0],))


def _sketch(s, grid):
    return C.sketch(np.asarray(s, dtype=np.float64), grid)


def _brackets(s, brackets):
    return C.bracket_pass(np.asarray(s, dtype=np.float64), brackets)


def distributed_percentile(x, q: float) -> float:
    """``numpy.percentile(x.compute(), q)`` (linear) of a 1-D dask array without
    gathering it: a sketch pass and one bracketed pass over the partitions."""
    parts = C.partitions(x)
    grid = C.sketch_grid()
    sketches = C.compute([C.delayed(_sketch)(p, grid) for p in parts])
    bounds = C.RankBounds(sketches)
    n = bounds.n
    prob = float(np.true_divide(np.float64(q), 100))
    lo, hi, t = C.ranks_numpy(n, prob)
    plan = {r: bounds.bracket(r) for r in dict.fromkeys((lo, hi))}
    res = C.compute([C.delayed(_brackets)(p, list(plan.values())) for p in parts])
    stats = dict(zip(plan, C.resolve_brackets(plan, res)))
    return C.lerp_numpy(stats[lo], stats[hi], t)


class IsolationForest(_IsolationForest):
    """:class:`ferromine.ensemble.IsolationForest` that fits on and scores dask arrays.

    ``fit`` counts the rows, resolves ``max_samples`` from the full row count
    (as the single-machine estimator does), and draws one uniform sample
    without replacement of ``min(n, n_estimators * max_samples)`` rows across
    the partitions (row indices from a seeded generator, gathered per
    partition); the trees grow on the client from that sample, each on its
    own ``max_samples`` rows, so the forest never sees more than it would on
    one machine. When the sample is all of the data (``n <= n_estimators *
    max_samples``) the forest equals the single-machine forest on the
    concatenated data with the same ``random_state``. Otherwise each tree's
    rows are a uniform draw from the sample rather than from the data: the
    same distribution for one tree, trees correlated through the shared
    sample.

    ``score_samples``, ``decision_function`` and ``predict`` on a dask array
    run per row chunk (``map_blocks``) and return dask arrays; on NumPy input
    they behave as the single-machine estimator. A float ``contamination``
    sets ``offset_`` to the exact percentile of the training scores, found by
    a sketch pass and one bracketed pass (no gather): the single-machine
    ``offset_`` semantics. ``sample_weight`` and ``warm_start`` are not
    supported by the distributed fit; dask DataFrames are read as arrays
    (no ``feature_names_in_``).
    """

    def fit(self, X, y=None, sample_weight=None):
        """Fit on a dask array (or DataFrame); returns self."""
        if sample_weight is not None:
            raise ValueError("sample_weight is not supported by the distributed fit; pass None")
        if self.warm_start:
            raise ValueError("warm_start is not supported by the distributed fit; set warm_start=False")
        self._check_params()
        X = _as_dask_array(X).persist()
        n = int(X.shape[0])
        if n == 0:
            raise ValueError("Found array with 0 sample(s) while a minimum of 1 is required by IsolationForest.")
        if isinstance(self.max_samples, str):
            max_samples = min(256, n)
        elif _is_int(self.max_samples):
            if self.max_samples > n:
                warnings.warn(
                    f"max_samples ({self.max_samples}) is greater than the total number of samples "
                    f"({n}). max_samples will be set to n_samples for estimation.",
                    UserWarning,
                )
                max_samples = n
            else:
                max_samples = int(self.max_samples)
        else:
            max_samples = int(self.max_samples * n)
        if max_samples < 1:
            raise ValueError(
                f"max_samples={self.max_samples!r} draws {max_samples} rows from {n} samples; "
                "pass a larger fraction or an int >= 1"
            )
        size = min(n, int(self.n_estimators) * max_samples)
        if size == n:
            sample = X.compute()
        else:
            seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
            idx = np.sort(np.random.default_rng([seed, 7]).choice(n, size=size, replace=False))
            sample = X[idx].compute()
        params = (self.max_samples, self.contamination)
        try:
            self.max_samples, self.contamination = max_samples, "auto"
            super().fit(np.ascontiguousarray(sample))
        finally:
            self.max_samples, self.contamination = params
        self.n_samples_fit_ = n
        if self.contamination != "auto":
            scores = map_scores(self, X, "score_samples")
            self.offset_ = float(distributed_percentile(scores, 100.0 * self.contamination))
        return self

    def _dispatch(self, X, method):
        if C.is_dask(X):
            return map_scores(self, X, method)
        return getattr(super(), method)(X)

    def score_samples(self, X):
        """Opposite anomaly score per row (dask array for dask input)."""
        return self._dispatch(X, "score_samples")

    def decision_function(self, X):
        """``score_samples - offset_`` (dask array for dask input)."""
        return self._dispatch(X, "decision_function")

    def predict(self, X):
        """+1 inlier, -1 outlier (dask array for dask input)."""
        return self._dispatch(X, "predict")
