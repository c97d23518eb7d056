"""Isolation forest: scikit-learn's ``IsolationForest`` on Rust kernels.

The public name lives in :mod:`ferromine.ensemble`. This module validates
parameters and data, draws the one seed every tree derives its random stream
from, and keeps the fitted forest as flat NumPy arrays (scikit-learn's node
layout, all trees concatenated). The Rust kernels are stateless: growing
returns the arrays, scoring takes them back.
"""

from __future__ import annotations

import numbers
import warnings
import weakref

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _core
from ._intake import check_sample_weight
from ._threads import resolve_n_jobs

# Fitted estimator -> (its scoring arrays, n_features, packed forest).
_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

__all__ = ["IsolationForest", "InvalidParameterError"]

_EULER_GAMMA = 0.5772156649015329


class InvalidParameterError(ValueError, TypeError):
    """A constructor parameter has a wrong type or value.

    Subclasses both ``ValueError`` and ``TypeError``, as scikit-learn's own
    ``InvalidParameterError``, so code catching either keeps working.
    """


def _average_path_length(n):
    """``c(n)``: average path length of an unsuccessful BST search over ``n`` items."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    two = n == 2
    big = n > 2
    out[two] = 1.0
    out[big] = 2.0 * (np.log(n[big] - 1.0) + _EULER_GAMMA) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def _kernel_input(X):
    """X as the kernels take it: a dense array, or ``(data, indices, indptr,
    n_features)`` of its CSR form (CSC and other sparse formats converted,
    never densified)."""
    if not sp.issparse(X):
        return X
    if X.format != "csr":
        X = X.tocsr()
    indices, indptr = X.indices, X.indptr
    if indices.dtype != indptr.dtype or indices.dtype not in (np.int32, np.int64):
        indices, indptr = indices.astype(np.int64), indptr.astype(np.int64)
    return (np.ascontiguousarray(X.data), indices, indptr, X.shape[1])


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _check_sample_weight(sample_weight, n_samples: int):
    """The shared checks; then equal weights everywhere, the same distribution
    as no weights, are treated as none (so unit weights give exactly the
    unweighted forest)."""
    sw = check_sample_weight(sample_weight, n_samples)
    if sw is not None and np.all(sw == sw[0]):
        return None
    return sw


class IsolationForest(OutlierMixin, BaseEstimator):
    """Isolation Forest outlier detection, a drop-in for scikit-learn's.

    Same parameters, sampling and scores as
    :class:`sklearn.ensemble.IsolationForest`: each tree is grown on
    ``max_samples`` rows and ``max_features`` features drawn at random, splits
    a node on a random non-constant feature at a random threshold, and stops
    at depth ``ceil(log2(max_samples))``. A row's anomaly score is
    ``s(x) = 2^(-E[h(x)] / c(max_samples))``, with ``h(x)`` the path length
    (edges to the leaf plus ``c(n)`` of the leaf's ``n`` training rows).

    Differences from scikit-learn: fitting *and* scoring run on ``n_jobs``
    threads (scikit-learn scores on one thread unless a joblib context says
    otherwise); X keeps its dtype (float32 or float64, no copy, any memory
    layout; CSR/CSC sparse matrices without densifying) and scores come
    back in that dtype; the fitted trees are flat
    NumPy arrays (``tree_*_`` attributes, :meth:`get_tree`) instead of
    ``estimators_``, and no training rows are kept. The same
    ``random_state`` gives the same forest and scores for any ``n_jobs``.

    Parameters
    ----------
    n_estimators : int, default=100
        Number of trees (>= 1).
    max_samples : "auto", int or float, default="auto"
        Rows drawn per tree: ``"auto"`` is ``min(256, n_samples)``; an int is
        used as is (capped at ``n_samples``, with a warning); a float in
        (0, 1] is a fraction ``int(max_samples * n_samples)``.
    contamination : "auto" or float, default="auto"
        Expected share of outliers, in (0, 0.5]. ``"auto"`` puts the
        threshold at ``offset_ = -0.5`` (the original paper's); a float puts
        it at that percentile of the training scores.
    max_features : int or float, default=1.0
        Features drawn (without replacement) per tree: an int as is, a float
        in (0, 1] as ``max(1, int(max_features * n_features))``.
    bootstrap : bool, default=False
        Draw rows with replacement (only the distinct rows enter a tree).
    n_jobs : int, default=None
        Threads for fitting and scoring; ``None`` follows
        ``FERROMINE_NUM_THREADS``/``OMP_NUM_THREADS``, else all physical
        cores; ``-1`` all cores.
    random_state : int, RandomState instance or None, default=None
        Seeds the forest: one seed is drawn from it per ``fit``, and tree
        ``i`` uses its own random stream derived from (seed, i).
    verbose : int, default=0
        Print a line per ``fit`` when > 0.
    warm_start : bool, default=False
        When True, a later ``fit`` keeps the existing trees and adds
        ``n_estimators - n_trees`` new ones.
    extension_level : int, default=0
        Not in scikit-learn: the extended isolation forest of Hariri, Kind
        and Brunner (2021). ``0`` (default) is the axis-parallel forest above,
        unchanged. ``k`` in ``[1, n_features - 1]`` splits every node on a
        random hyperplane through a point drawn uniformly in the node's
        bounding box, with a normal vector of ``k + 1`` non-zero N(0, 1)
        components on distinct features drawn among the node's non-constant
        ones (fewer if fewer are non-constant); a row goes left when its
        projection is at most the plane's. Rows whose projection is NaN go
        to one side, as NaN does in the axis-parallel trees. Sampling, depth
        limit and scores are the same; :meth:`feature_contributions` is
        defined for ``extension_level=0`` only.

    Attributes
    ----------
    max_samples_ : int
        Rows drawn per tree.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    estimators_features_ : list of ndarray of int64
        Features each tree could use.
    tree_offsets_ : ndarray of int64, shape (n_trees + 1,)
        Tree ``t``'s nodes are ``tree_offsets_[t]:tree_offsets_[t + 1]`` of
        every ``tree_*_`` node array below; child indices are local to the tree.
    tree_feature_, tree_threshold_ : ndarray (int32, float64)
        Split feature (column of X) and threshold (``x <= threshold`` goes
        left); -2 at leaves, as scikit-learn's ``tree_``.
    tree_children_left_, tree_children_right_ : ndarray of int32
        Child node indices, -1 at leaves.
    tree_missing_go_to_left_ : ndarray of uint8
        Where NaN goes at each split.
    tree_n_node_samples_ : ndarray of int64
        Distinct training rows that reached each node.
    tree_value_ : ndarray of float64
        Path length of a row ending in the node: ``depth + c(n_node_samples)``.

        The arrays read when scoring (offsets, feature, threshold, children,
        missing_go_to_left, value) are read-only: scoring keeps a packed copy
        of them. To edit a forest, assign new arrays.
    tree_hyperplane_features_, tree_hyperplane_coefs_ : ndarray (int32, float64)
        Only with ``extension_level > 0``: shape (n_nodes, extension_level + 1),
        node ``i`` sends a row left when
        ``sum_s coefs[i, s] * x[features[i, s]] <= tree_threshold_[i]``
        (slots with feature -1 unused; all slots unused at leaves).
        ``tree_feature_`` then holds the first slot's feature.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when X had string column names.

    Examples
    --------
    >>> import numpy as np
    >>> from ferromine.ensemble import IsolationForest
    >>> X = np.array([[-1.1], [0.3], [0.5], [100.0]])
    >>> IsolationForest(random_state=0).fit(X).predict([[0.1], [0.0], [90.0]])
    array([ 1,  1, -1])
    """

    def __init__(
        self,
        *,
        n_estimators=100,
        max_samples="auto",
        contamination="auto",
        max_features=1.0,
        bootstrap=False,
        n_jobs=None,
        random_state=None,
        verbose=0,
        warm_start=False,
        extension_level=0,
    ):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.contamination = contamination
        self.max_features = max_features
        self.bootstrap = bootstrap
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.extension_level = extension_level

    # -- parameters -----------------------------------------------------

    def _check_params(self) -> None:
        def bad(name, allowed):
            value = getattr(self, name)
            raise InvalidParameterError(
                f"The {name!r} parameter of IsolationForest must be {allowed}. Got {value!r} instead."
            )

        if not _is_int(self.n_estimators) or self.n_estimators < 1:
            bad("n_estimators", "an int in the range [1, inf)")
        ms = self.max_samples
        if isinstance(ms, str):
            if ms != "auto":
                bad("max_samples", "a str among {'auto'}, an int in the range [1, inf) or a float in the range (0.0, 1.0]")
        elif _is_int(ms):
            if ms < 1:
                bad("max_samples", "a str among {'auto'}, an int in the range [1, inf) or a float in the range (0.0, 1.0]")
        elif not (_is_real(ms) and 0.0 < ms <= 1.0):
            bad("max_samples", "a str among {'auto'}, an int in the range [1, inf) or a float in the range (0.0, 1.0]")
        c = self.contamination
        if isinstance(c, str):
            if c != "auto":
                bad("contamination", "a str among {'auto'} or a float in the range (0.0, 0.5]")
        elif not (_is_real(c) and 0.0 < c <= 0.5):
            bad("contamination", "a str among {'auto'} or a float in the range (0.0, 0.5]")
        mf = self.max_features
        if _is_int(mf):
            pass  # checked against n_features in fit
        elif not (_is_real(mf) and 0.0 < mf <= 1.0):
            bad("max_features", "an int or a float in the range (0.0, 1.0]")
        for name in ("bootstrap", "warm_start"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                bad(name, "an instance of 'bool'")
        if self.n_jobs is not None and not _is_int(self.n_jobs):
            bad("n_jobs", "an int or None")
        if not (_is_int(self.verbose) or isinstance(self.verbose, (bool, np.bool_))) or self.verbose < 0:
            bad("verbose", "an int in the range [0, inf) or a bool")
        el = self.extension_level
        if not _is_int(el) or el < 0:
            bad("extension_level", "an int in the range [0, n_features - 1]")
        rs = self.random_state
        if not (rs is None or _is_int(rs) or isinstance(rs, np.random.RandomState)):
            bad("random_state", "an int in the range [0, 4294967295], an instance of 'numpy.random.mtrand.RandomState' or None")

    # -- fitting --------------------------------------------------------

    def fit(self, X, y=None, sample_weight=None):
        """Grow the forest on ``X``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            float32 and float64 arrays are used as they are (no copy); other
            numbers are converted to float64. Sparse input (CSR, CSC) is
            read as it is stored (CSC converted to CSR), never densified, and
            gives exactly the forest the dense matrix gives. NaN is allowed (see the module
            docs of scikit-learn's random splitter); so are infinities.
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Rows are drawn with probability proportional to their weight.

        Returns
        -------
        self : IsolationForest
        """
        self._check_params()
        warm = self.warm_start and hasattr(self, "tree_offsets_")
        X = validate_data(
            self,
            X,
            accept_sparse=["csr", "csc"],
            dtype=[np.float64, np.float32],
            ensure_all_finite=False,
            reset=True,
        )
        if sp.issparse(X) and X.format != "csr":
            X = X.tocsr()  # the kernels read rows; convert once (sparse copy, not dense)
        n_samples, n_features = X.shape
        sw = _check_sample_weight(sample_weight, n_samples)

        if isinstance(self.max_samples, str):
            max_samples = min(256, n_samples)
        elif _is_int(self.max_samples):
            if self.max_samples > n_samples:
                warnings.warn(
                    f"max_samples ({self.max_samples}) is greater than the total number of samples "
                    f"({n_samples}). max_samples will be set to n_samples for estimation.",
                    UserWarning,
                )
                max_samples = n_samples
            else:
                max_samples = int(self.max_samples)
        else:
            max_samples = int(self.max_samples * n_samples)
        if max_samples < 1:
            raise ValueError(
                f"max_samples={self.max_samples!r} draws {max_samples} rows from {n_samples} samples; "
                "pass a larger fraction or an int >= 1"
            )
        if sw is not None and not self.bootstrap and np.count_nonzero(sw) < max_samples:
            raise ValueError(
                f"only {np.count_nonzero(sw)} rows have a non-zero sample_weight, but max_samples="
                f"{max_samples} rows must be drawn without replacement; use a smaller max_samples "
                "or bootstrap=True"
            )

        if _is_int(self.max_features):
            max_features = int(self.max_features)
        else:
            max_features = int(self.max_features * n_features)
        if max_features > n_features:
            raise ValueError(f"max_features must be <= n_features: got {max_features} > {n_features}")
        max_features = max(1, max_features)

        extension_level = int(self.extension_level)
        if extension_level > n_features - 1:
            raise ValueError(
                f"extension_level={extension_level} must be in [0, n_features - 1] = [0, {n_features - 1}] "
                "(a hyperplane has at most n_features non-zero components)"
            )
        if warm and getattr(self, "_extension_level", 0) != extension_level:
            raise ValueError(
                f"warm_start: the existing trees were grown with extension_level={self._extension_level}, "
                f"not {extension_level}; set warm_start=False to grow a new forest"
            )
        if warm and self.tree_offsets_[-1] and len(self.estimators_features_):
            if self._n_features_fit != n_features:
                raise ValueError(
                    f"warm_start: X has {n_features} features but the existing trees were grown on "
                    f"{self._n_features_fit}; set warm_start=False to grow a new forest"
                )
        n_existing = len(self.estimators_features_) if warm else 0
        n_more = self.n_estimators - n_existing
        if n_more < 0:
            raise ValueError(
                f"n_estimators={self.n_estimators} must be larger or equal to "
                f"len(estimators_)={n_existing} when warm_start==True"
            )
        n_threads = resolve_n_jobs(self.n_jobs)
        max_depth = int(np.ceil(np.log2(max(max_samples, 2))))
        self.max_samples_ = max_samples
        self._max_samples = max_samples
        self._max_features = max_features

        if n_more == 0:
            warnings.warn("Warm-start fitting without increasing n_estimators does not fit new trees.", UserWarning)
        else:
            # One seed per fit; tree i uses the stream (seed, i) whatever the
            # thread count. With an int random_state a warm start continues
            # the same streams, so 10 + 10 trees equal 20 trees.
            seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
            common = (_kernel_input(X), seed, n_existing, n_more, max_samples, max_features)
            common += (bool(self.bootstrap), max_depth)
            if extension_level == 0:
                grown = _core.iforest_grow(*common, sw, n_threads)
                planes = None
            else:
                grown, hf, hc = _core.iforest_grow_extended(*common, extension_level, sw, n_threads)
                planes = (hf.reshape(-1, extension_level + 1), hc.reshape(-1, extension_level + 1))
            self._store(grown, planes, append=warm)
            self._extension_level = extension_level
            self._n_features_fit = n_features
            if self.verbose:
                print(f"IsolationForest: grew {n_more} trees on {n_samples} x {n_features}")

        if self.contamination == "auto":
            self.offset_ = -0.5
        else:
            scores = self._score(X, n_threads)
            self.offset_ = float(np.percentile(scores, 100.0 * self.contamination))
        return self

    def _store(self, grown, planes, append: bool) -> None:
        (offsets, feat_offsets, features, feature, threshold, left, right, nan_left, n_node, value) = grown
        if planes is not None:
            if append:
                self.tree_hyperplane_features_ = np.concatenate([self.tree_hyperplane_features_, planes[0]])
                self.tree_hyperplane_coefs_ = np.concatenate([self.tree_hyperplane_coefs_, planes[1]])
            else:
                self.tree_hyperplane_features_, self.tree_hyperplane_coefs_ = planes
        elif not append:
            for name in ("tree_hyperplane_features_", "tree_hyperplane_coefs_"):
                self.__dict__.pop(name, None)
        features_list = [features[a:b] for a, b in zip(feat_offsets[:-1], feat_offsets[1:])]
        if append:
            base = self.tree_offsets_[-1]
            self.tree_offsets_ = np.concatenate([self.tree_offsets_, offsets[1:] + base])
            self.estimators_features_ = list(self.estimators_features_) + features_list
            for name, new in (
                ("tree_feature_", feature),
                ("tree_threshold_", threshold),
                ("tree_children_left_", left),
                ("tree_children_right_", right),
                ("tree_missing_go_to_left_", nan_left),
                ("tree_n_node_samples_", n_node),
                ("tree_value_", value),
            ):
                setattr(self, name, np.concatenate([getattr(self, name), new]))
            self._freeze_trees()
            return
        self.tree_offsets_ = offsets
        self.estimators_features_ = features_list
        self.tree_feature_ = feature
        self.tree_threshold_ = threshold
        self.tree_children_left_ = left
        self.tree_children_right_ = right
        self.tree_missing_go_to_left_ = nan_left
        self.tree_n_node_samples_ = n_node
        self.tree_value_ = value
        self._freeze_trees()

    def _freeze_trees(self) -> None:
        # Read-only, so the packed copy scoring keeps (`_packed_forest`)
        # cannot go stale under in-place edits; assign new arrays to edit.
        for name in self._SCORING_ARRAYS:
            getattr(self, name).flags.writeable = False

    # -- scoring --------------------------------------------------------

    def _score(self, X, n_threads: int) -> np.ndarray:
        ext = getattr(self, "_extension_level", 0)
        if ext:
            scores = _core.iforest_score_extended(
                _kernel_input(X),
                self.tree_offsets_,
                self.tree_feature_,
                self.tree_threshold_,
                self.tree_children_left_,
                self.tree_children_right_,
                self.tree_missing_go_to_left_,
                self.tree_value_,
                np.ascontiguousarray(self.tree_hyperplane_features_).reshape(-1),
                np.ascontiguousarray(self.tree_hyperplane_coefs_).reshape(-1),
                ext,
                self._max_samples,
                n_threads,
            )
            return scores.astype(X.dtype, copy=False)
        scores = _core.iforest_score(_kernel_input(X), self._packed_forest(X.shape[1]), self._max_samples, n_threads)
        return scores.astype(X.dtype, copy=False)

    _SCORING_ARRAYS = (
        "tree_offsets_",
        "tree_feature_",
        "tree_threshold_",
        "tree_children_left_",
        "tree_children_right_",
        "tree_missing_go_to_left_",
        "tree_value_",
    )

    def _packed_forest(self, n_features: int):
        # The forest checked and laid out for scoring, built once and kept
        # while the tree arrays are the same objects (fit and warm_start
        # assign new ones), so a call on a few rows does not repack it. Kept
        # beside the estimator, not in it: scoring leaves __dict__ alone and
        # pickles carry no cache.
        arrays = tuple(getattr(self, name) for name in self._SCORING_ARRAYS)
        cached = _PACKED.get(self)
        if cached is None or cached[1] != n_features or any(a is not b for a, b in zip(cached[0], arrays)):
            cached = (arrays, n_features, _core.PackedForest(*arrays, n_features))
            _PACKED[self] = cached
        return cached[2]

    def _validate_for_scoring(self, X):
        check_is_fitted(self)
        return validate_data(
            self, X, accept_sparse="csr", dtype=[np.float64, np.float32], ensure_all_finite=False, reset=False
        )

    def score_samples(self, X):
        """Opposite of the anomaly score of the paper: ``-s(x)``, in [-1, 0].

        The lower, the more abnormal. Returned in X's dtype (float32 or
        float64).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Sparse input is scored row tile by row tile, with the same
            scores as the dense matrix.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
        """
        X = self._validate_for_scoring(X)
        return self._score(X, resolve_n_jobs(self.n_jobs))

    def decision_function(self, X):
        """``score_samples(X) - offset_``: negative for outliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,)
        """
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """+1 for inliers, -1 for outliers (``decision_function < 0``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of int, shape (n_samples,)
        """
        decision = self.decision_function(X)
        labels = np.ones(decision.shape[0], dtype=int)
        labels[decision < 0] = -1
        return labels

    def feature_contributions(self, X):
        """Which features isolated each row: its path shortening per feature.

        When a row walks an edge of a tree from a node holding ``n_p``
        training rows to a child holding ``n_c``, the node's split feature is
        credited ``c(n_p) - c(n_c) - 1``: how much the expected remaining
        path shrank, less the one edge spent (``c`` is the average path
        length, as in the score). Credits are summed along the row's path in
        every tree and averaged over the trees. Along one path they
        telescope, so each row satisfies exactly (up to rounding)::

            contributions.sum(axis=1) == mean_t c(n_root_t) - mean_t h_t(x)

        with ``h_t(x)`` the path length ``score_samples`` averages. Without
        ``bootstrap`` every root holds ``max_samples_`` rows, so
        ``score_samples(X) == -2 ** (contributions.sum(axis=1) / c(max_samples_) - 1)``.
        Large positive entries mark the features that isolated the row
        quickly (the reason it looks anomalous); negative ones kept it deep.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        contributions : ndarray of float64, shape (n_samples, n_features)
        """
        X = self._validate_for_scoring(X)
        if getattr(self, "_extension_level", 0):
            raise ValueError(
                "feature_contributions is defined for axis-parallel trees (extension_level=0); "
                f"this forest splits on hyperplanes (extension_level={self._extension_level})"
            )
        flat = _core.iforest_contributions(
            _kernel_input(X),
            self.tree_offsets_,
            self.tree_feature_,
            self.tree_threshold_,
            self.tree_children_left_,
            self.tree_children_right_,
            self.tree_missing_go_to_left_,
            self.tree_value_,
            self.tree_n_node_samples_,
            resolve_n_jobs(self.n_jobs),
        )
        return flat.reshape(X.shape[0], X.shape[1])

    def get_tree(self, i: int) -> dict:
        """Tree ``i``'s node arrays (views), keyed as scikit-learn's ``tree_``.

        Keys: ``feature``, ``threshold``, ``children_left``,
        ``children_right``, ``missing_go_to_left``, ``n_node_samples`` and
        ``value`` (the path length of a row ending in the node); with
        ``extension_level > 0`` also ``hyperplane_features`` and
        ``hyperplane_coefs`` (see the ``tree_hyperplane_*_`` attributes).
        """
        check_is_fitted(self)
        n_trees = len(self.tree_offsets_) - 1
        if not _is_int(i) or not -n_trees <= i < n_trees:
            raise IndexError(f"tree index {i!r} out of range for a forest of {n_trees} trees")
        a, b = self.tree_offsets_[i % n_trees], self.tree_offsets_[i % n_trees + 1]
        return {
            "feature": self.tree_feature_[a:b],
            "threshold": self.tree_threshold_[a:b],
            "children_left": self.tree_children_left_[a:b],
            "children_right": self.tree_children_right_[a:b],
            "missing_go_to_left": self.tree_missing_go_to_left_[a:b],
            "n_node_samples": self.tree_n_node_samples_[a:b],
            "value": self.tree_value_[a:b],
            **(
                {
                    "hyperplane_features": self.tree_hyperplane_features_[a:b],
                    "hyperplane_coefs": self.tree_hyperplane_coefs_[a:b],
                }
                if getattr(self, "_extension_level", 0)
                else {}
            ),
        }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.sparse = True
        return tags
