"""Population Stability Index (PSI): drift of each feature against a reference.

The public names live in :mod:`ferromine.drift`. This module validates,
converts and calls the Rust kernels (quantiles by selection, one binning pass
per feature, parallel over features and row chunks); turning counts into PSI
is a few vector operations per feature and happens here.

PSI of one feature with fixed bins is ``sum_i (c_i - r_i) * ln(c_i / r_i)``,
with ``r_i`` and ``c_i`` the reference and current shares of bin ``i``. A bin
empty on one side gets the share ``eps`` (no renormalisation), so the value is
always finite.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _core
from ._intake import Features, read_features
from ._threads import resolve_n_jobs

__all__ = ["PSIDrift", "PSIAccumulator", "DriftReport", "psi", "severity"]

#: Conventional bands: below 0.1 no significant change, 0.1 to 0.25 moderate,
#: above 0.25 major.
MODERATE, MAJOR = 0.1, 0.25

_STRATEGIES = ("quantile", "uniform")
_MISSING = ("drop", "bin")
_COMPAT = (None, "feature_engine", "evidently")


def severity(value: float) -> str:
    """``"none"`` below 0.1, ``"moderate"`` up to 0.25, ``"major"`` above."""
    if value < MODERATE:
        return "none"
    return "moderate" if value <= MAJOR else "major"


def qcut_probabilities(n_bins: int) -> np.ndarray:
    """The probabilities ``pandas.qcut(x, q=n_bins)`` uses (pandas >= 3)."""
    q = np.linspace(0, 1, n_bins + 1)
    np.putmask(q, n_bins * q != np.arange(n_bins + 1), np.nextafter(q, 1))
    return q


def _uniform_edges(lo: float, hi: float, n_bins: int) -> np.ndarray:
    """``pandas.cut(x, bins=n_bins)`` edges (before it widens the ends)."""
    if lo == hi:
        lo = lo - (0.001 * abs(lo) if lo != 0 else 0.001)
        hi = hi + (0.001 * abs(hi) if hi != 0 else 0.001)
    return np.linspace(lo, hi, n_bins + 1, endpoint=True)


def _sturges_edges(lo: float, hi: float, size: int) -> np.ndarray:
    """``numpy.histogram_bin_edges(a, "sturges")`` from the extent and size of ``a``."""
    ptp = hi - lo
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    width = ptp / (np.log2(size) + 1.0)
    n_equal = int(np.ceil((hi - lo) / width)) if width else 1
    return np.linspace(lo, hi, n_equal + 1, endpoint=True)


def _shares(counts: np.ndarray, total: int, fill: str, eps: float) -> np.ndarray:
    shares = counts / total if total else np.zeros(len(counts))
    zero = shares == 0
    if fill == "evidently":
        nonzero = shares[~zero]
        smallest = nonzero.min() if nonzero.size else 1.0
        value = smallest / 1e6 if smallest <= 1e-4 else 1e-4
    else:
        value = eps
    return np.where(zero, value, shares)


def _psi_terms(ref: np.ndarray, cur: np.ndarray, compat) -> np.ndarray:
    if compat == "evidently":
        return (ref - cur) * np.log(ref / cur)
    return (cur - ref) * np.log(cur / ref)


@dataclass
class DriftReport:
    """PSI of every feature of one current data set against the reference.

    Attributes
    ----------
    feature_names : list of str
    psi : ndarray of shape (n_features,)
    threshold : ndarray of shape (n_features,)
        The threshold each feature was compared with.
    drifted : ndarray of bool
        ``psi > threshold`` (``>=`` under ``compat="evidently"``, as evidently).
    severity : ndarray of str
        ``"none"``, ``"moderate"`` or ``"major"`` (see :func:`severity`).
    bins : list
        Per feature: its bin labels (interval strings or categories), with
        ``"missing"`` last when missing values have their own bin.
    reference_proportions, current_proportions : list of ndarray
        Shares per bin after empty bins were given ``eps``.
    contributions : list of ndarray
        Per feature, each bin's term of the PSI sum.
    """

    feature_names: list[str]
    psi: np.ndarray
    threshold: np.ndarray
    drifted: np.ndarray
    severity: np.ndarray
    bins: list = field(repr=False)
    reference_proportions: list = field(repr=False)
    current_proportions: list = field(repr=False)
    contributions: list = field(repr=False)

    def to_frame(self):
        """A pandas DataFrame indexed by feature: psi, threshold, drifted, severity."""
        import pandas as pd

        return pd.DataFrame(
            {
                "psi": self.psi,
                "threshold": self.threshold,
                "drifted": self.drifted,
                "severity": self.severity,
                "n_bins": [len(b) for b in self.bins],
            },
            index=pd.Index(self.feature_names, name="feature"),
        )

    def contributions_frame(self, feature):
        """Per-bin shares and PSI terms of one feature (by name or position)."""
        import pandas as pd

        j = self.feature_names.index(feature) if isinstance(feature, str) else int(feature)
        return pd.DataFrame(
            {
                "reference": self.reference_proportions[j],
                "current": self.current_proportions[j],
                "contribution": self.contributions[j],
            },
            index=pd.Index([str(b) for b in self.bins[j]], name="bin"),
        )


class _Counts:
    """Current-side counts of every feature: what an accumulator holds."""

    def __init__(self, n_features: int):
        self.n_rows = 0
        self.counts: list[np.ndarray | None] = [None] * n_features
        self.missing = np.zeros(n_features, dtype=np.int64)
        #: Per categorical feature, counts of categories the reference lacked.
        self.unseen: list[dict] = [dict() for _ in range(n_features)]

    def add(self, other: _Counts) -> None:
        self.n_rows += other.n_rows
        self.missing += other.missing
        for j, c in enumerate(other.counts):
            self.counts[j] = c.copy() if self.counts[j] is None else self.counts[j] + c
        for mine, theirs in zip(self.unseen, other.unseen):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v


class PSIDrift(BaseEstimator):
    """Population Stability Index of each feature against a reference data set.

    ``fit`` learns bin edges (numeric features) or categories (categorical
    features) and the reference counts; :meth:`compare` (or :meth:`psi`)
    scores current data against them. Numeric features come from NumPy,
    pandas, pyarrow or polars without a copy; string, categorical and boolean
    columns are binned by category.

    Parameters
    ----------
    n_bins : int, default=10
        Bins per numeric feature (>= 2). Quantile bins with tied values can
        merge, so a feature may end up with fewer.
    strategy : {"quantile", "uniform"}, default="quantile"
        ``"quantile"``: the ``n_bins - 1`` interior cut points are the
        linear-interpolated quantiles of the reference (as ``numpy.quantile``)
        with duplicates removed; the outer bins are open, so no current value
        falls outside. ``"uniform"``: equal-width bins over the reference's
        finite range.
    eps : float, default=1e-4
        Share given to a bin that is empty on one side.
    missing : {"drop", "bin"}, default="drop"
        ``"drop"``: NaN/None are left out of both distributions. ``"bin"``:
        missing values get a bin of their own, so a change in the missing rate
        shows as drift.
    threshold : float or "auto", default=0.25
        A feature drifted when its PSI exceeds this. ``"auto"`` uses the
        chi-square critical value of feature-engine's ``threshold="auto"``:
        ``chi2.ppf(1 - p_value, B - 1) * (1/N + 1/M)``. Usual bands: below 0.1
        no significant change, 0.1 to 0.25 moderate, above 0.25 major.
    p_value : float, default=0.001
        Significance level for ``threshold="auto"``.
    compat : {None, "feature_engine", "evidently"}, default=None
        Reproduce another library's numbers exactly.
        ``"feature_engine"``: ``DropHighPSIFeatures`` (its quantile edges include
        the minimum and maximum before duplicates are dropped, which merges the
        bottom bins of tied data; ``strategy="uniform"`` is its
        ``"equal_width"``). ``"evidently"``: evidently's ``psi`` stat test
        (equal-width Sturges bins over reference and current together when the
        reference has more than 20 distinct values, else one bin per value;
        infinite values dropped; its own fill for empty bins; drift at
        ``psi >= threshold``). Under ``"evidently"`` the bins depend on the
        current data, so the fitted estimator keeps the reference values and
        cannot stream.
    categorical_features : list of str or int, optional
        Numeric features to bin by value instead (for example integer codes).
    n_jobs : int, optional
        Threads: None uses ``FERROMINE_NUM_THREADS``/``OMP_NUM_THREADS`` or all
        physical cores, -1 all cores. Results do not depend on it.

    Attributes
    ----------
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when the reference had string column names.
    feature_kinds_ : ndarray of str
        ``"numeric"`` or ``"categorical"`` per feature.
    bin_edges_ : list of (ndarray or None)
        Per numeric feature its edges, ``-inf`` first and ``+inf`` last; None
        for categorical features. Bins are right-closed ``(a, b]`` (left-closed
        under ``compat="evidently"``, where they are recomputed per call).
    categories_ : list of (ndarray or None)
        Per categorical feature the reference categories; None for numeric.
    reference_counts_ : list of ndarray
        Rows of the reference per bin (the missing bin last if ``missing="bin"``).
    reference_proportions_ : list of ndarray
        The same as shares of the reference rows that count (all rows with
        ``missing="bin"``, the non-missing ones otherwise), before ``eps``.
    reference_missing_ : ndarray of int
        Missing values per feature in the reference.
    n_reference_ : int
        Rows in the reference.

    Notes
    -----
    ``inf`` and ``-inf`` are ordinary extreme values: they fall in the outer
    bins (under ``compat="evidently"`` they are dropped, as evidently does).
    Inputs must not be modified by other threads during a call.

    Examples
    --------
    >>> import numpy as np
    >>> from ferromine.drift import PSIDrift
    >>> rng = np.random.default_rng(0)
    >>> reference = rng.normal(size=(10_000, 2))
    >>> current = reference + [0.0, 0.5]
    >>> drift = PSIDrift().fit(reference)
    >>> drift.psi(current).round(3)
    array([0.   , 0.241])
    >>> drift.compare(current).severity.tolist()
    ['none', 'moderate']
    """

    def __init__(
        self,
        *,
        n_bins=10,
        strategy="quantile",
        eps=1e-4,
        missing="drop",
        threshold=0.25,
        p_value=0.001,
        compat=None,
        categorical_features=None,
        n_jobs=None,
    ):
        self.n_bins = n_bins
        self.strategy = strategy
        self.eps = eps
        self.missing = missing
        self.threshold = threshold
        self.p_value = p_value
        self.compat = compat
        self.categorical_features = categorical_features
        self.n_jobs = n_jobs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        tags.requires_fit = True
        return tags

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        n_bins = self.n_bins
        if isinstance(n_bins, bool) or not isinstance(n_bins, numbers.Integral):
            raise TypeError(f"n_bins must be an int >= 2, got {n_bins!r}")
        if n_bins < 2:
            raise ValueError(f"n_bins must be >= 2, got {n_bins}: PSI needs at least two bins")
        if self.strategy not in _STRATEGIES:
            raise ValueError(f"strategy must be one of {_STRATEGIES}, got {self.strategy!r}")
        if self.missing not in _MISSING:
            raise ValueError(f"missing must be one of {_MISSING}, got {self.missing!r}")
        if self.compat not in _COMPAT:
            raise ValueError(f"compat must be one of {_COMPAT}, got {self.compat!r}")
        if self.compat is not None and self.missing != "drop":
            raise ValueError(
                f"compat={self.compat!r} reproduces a library that drops missing values; "
                "use missing='drop' with it, or compat=None with missing='bin'"
            )
        eps = self.eps
        if not isinstance(eps, numbers.Real) or not (0 < eps < 1):
            raise ValueError(f"eps must be a number in (0, 1), got {eps!r}")
        t = self.threshold
        if isinstance(t, str):
            if t != "auto":
                raise ValueError(f"threshold must be a number >= 0 or 'auto', got {t!r}")
        elif not isinstance(t, numbers.Real) or isinstance(t, bool) or not t >= 0:
            raise ValueError(f"threshold must be a number >= 0 or 'auto', got {t!r}")
        p = self.p_value
        if not isinstance(p, numbers.Real) or not (0 < p < 1):
            raise ValueError(f"p_value must be in (0, 1), got {p!r}")
        resolve_n_jobs(self.n_jobs)

    def _threads(self) -> int:
        return resolve_n_jobs(self.n_jobs)

    def _read(self, X, *, reset: bool, allow_1d: bool = False) -> Features:
        feats = read_features(X, categorical=self.categorical_features, allow_1d=allow_1d)
        if feats.n_features == 0:
            raise ValueError(
                f"Found array with 0 feature(s) (shape=({feats.n_rows}, 0)) while a minimum of 1 "
                "is required: PSI needs at least one feature"
            )
        if getattr(self, "_one_d", False):
            if feats.n_features != 1:
                raise ValueError(f"the reference was one feature but X has {feats.n_features}")
            return feats
        if reset:
            self._check_names(X, feats, reset=True)
        else:
            if feats.n_features != self.n_features_in_:
                raise ValueError(
                    f"X has {feats.n_features} features, but {type(self).__name__} is "
                    f"expecting {self.n_features_in_} features as input"
                )
            self._check_names(X, feats, reset=False)
            for j, kind in enumerate(feats.kinds):
                if kind != self.feature_kinds_[j]:
                    raise ValueError(
                        f"column {feats.label(j)} was {self.feature_kinds_[j]} in the reference "
                        f"but is {kind} now; convert it to the reference's type"
                    )
        return feats

    def _check_names(self, X, feats: Features, *, reset: bool) -> None:
        # scikit-learn's own bookkeeping and messages for n_features_in_ and
        # feature_names_in_ (pandas, polars, pyarrow), without its array
        # conversion: ours is in _intake.
        if isinstance(X, np.ndarray) and X.ndim == 1:
            X = X[:, None]
        validate_data(self, X, skip_check_array=True, reset=reset)

    # --------------------------------------------------------------------- fit
    def fit(self, X, y=None):
        """Learn bins and reference counts from ``X`` (the reference data).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
        y : ignored

        Returns
        -------
        self : PSIDrift
        """
        self._check_params()
        feats = self._read(X, reset=True)
        self._fit_features(feats)
        return self

    def _fit_features(self, feats: Features) -> None:
        if feats.n_rows == 0:
            raise ValueError(
                f"Found array with 0 sample(s) (shape=(0, {feats.n_features})) while a minimum of 1 "
                "is required: the reference data is empty, PSI needs at least one reference row"
            )
        d = feats.n_features
        self.feature_kinds_ = np.asarray(feats.kinds, dtype=object)
        self._display_names = list(feats.names) if feats.names else [f"x{j}" for j in range(d)]
        self.bin_edges_ = [None] * d
        self.categories_ = [None] * d
        self.reference_counts_ = [None] * d
        self.reference_missing_ = np.zeros(d, dtype=np.int64)
        self.n_reference_ = feats.n_rows
        if feats.numeric_index:
            self._fit_numeric(feats)
        for j, cat in feats.categorical.items():
            counts, missing = _category_counts(cat.codes, len(cat.categories))
            keep = counts > 0  # categories never seen in the reference are not bins
            self.categories_[j] = np.asarray(
                [c for c, k in zip(cat.categories, keep) if k], dtype=object
            )
            self.reference_counts_[j] = self._with_missing(counts[keep], missing)
            self.reference_missing_[j] = missing
        self.reference_proportions_ = [
            counts / max(1, self.n_reference_ - (0 if self.missing == "bin" else self.reference_missing_[j]))
            for j, counts in enumerate(self.reference_counts_)
        ]
        self.n_features_in_ = d

    def _fit_numeric(self, feats: Features) -> None:
        idx = feats.numeric_index
        n_bins, threads = self.n_bins, self._threads()
        if self.compat == "evidently":
            self._fit_numeric_evidently(feats)
            return
        if self.strategy == "quantile":
            fe = self.compat == "feature_engine"
            probs = qcut_probabilities(n_bins)
            probs = probs if fe else probs[1:-1]
            values, n_le, n_valid, missing = _core.psi_quantiles(feats.numeric, probs, threads)
            _check_valid(feats, idx, n_valid)
            for k, j in enumerate(idx):
                edges = np.unique(values[k])
                # feature-engine: pd.qcut(duplicates="drop") keeps the unique
                # quantiles, min and max included, then opens both ends.
                cuts = edges[1:-1] if fe else edges
                # The kernel counted the values <= each quantile, which are the
                # reference's cumulative bin counts: no second pass needed.
                order = np.argsort(values[k], kind="stable")
                at = np.searchsorted(values[k][order], cuts)
                cumulative = n_le[k][order][at].astype(np.int64)
                counts = np.diff(np.concatenate([[0], cumulative, [n_valid[k]]]))
                self._set_numeric(j, cuts, counts, missing[k])
            return
        lo, hi, n_valid, _ = _core.psi_extents(feats.numeric, threads)
        _check_valid(feats, idx, n_valid)
        cuts = [_uniform_edges(a, b, n_bins)[1:-1] for a, b in zip(lo, hi)]
        counts, missing = _core.psi_histograms(feats.numeric, cuts, True, threads)
        for k, j in enumerate(idx):
            self._set_numeric(j, cuts[k], counts[k], missing[k])

    def _set_numeric(self, j: int, cuts: np.ndarray, counts: np.ndarray, missing) -> None:
        self.bin_edges_[j] = np.concatenate([[-np.inf], cuts, [np.inf]])
        self.reference_counts_[j] = self._with_missing(np.asarray(counts, dtype=np.int64), missing)
        self.reference_missing_[j] = missing

    def _fit_numeric_evidently(self, feats: Features) -> None:
        # evidently derives bins from reference and current together: keep the
        # reference's finite values (its pipeline drops NaN and +-inf rows).
        self.reference_values_ = [None] * feats.n_features
        for j, values in zip(feats.numeric_index, _numeric_columns(feats)):
            finite = values[np.isfinite(values)]
            if finite.size == 0:
                raise ValueError(
                    f"column {feats.label(j)} has no finite values in the reference data; "
                    "drop it or fill it"
                )
            self.reference_values_[j] = finite
            self.reference_missing_[j] = values.size - finite.size
            self.reference_counts_[j] = np.asarray([finite.size], dtype=np.int64)

    def _with_missing(self, counts: np.ndarray, missing) -> np.ndarray:
        counts = np.asarray(counts, dtype=np.int64)
        if self.missing == "bin":
            return np.append(counts, np.int64(missing))
        return counts

    # ------------------------------------------------------------------ score
    def _count(self, feats: Features) -> _Counts:
        """Current-side counts of ``feats`` in the fitted bins."""
        out = _Counts(feats.n_features)
        out.n_rows = feats.n_rows
        if feats.numeric_index and self.compat != "evidently":
            cuts = [self.bin_edges_[j][1:-1] for j in feats.numeric_index]
            counts, missing = _core.psi_histograms(feats.numeric, cuts, True, self._threads())
            for k, j in enumerate(feats.numeric_index):
                out.counts[j] = counts[k].astype(np.int64)
                out.missing[j] = missing[k]
        for j, cat in feats.categorical.items():
            known = {c: i for i, c in enumerate(self.categories_[j])}
            cur_counts, missing = _category_counts(cat.codes, len(cat.categories))
            counts = np.zeros(len(known), dtype=np.int64)
            for c, n in zip(cat.categories, cur_counts):
                if n == 0:
                    continue
                i = known.get(c)
                if i is None:
                    out.unseen[j][c] = out.unseen[j].get(c, 0) + int(n)
                else:
                    counts[i] += n
            out.counts[j] = counts
            out.missing[j] = missing
        return out

    def compare(self, X) -> DriftReport:
        """PSI, drift flag, severity and per-bin detail of ``X`` against the reference.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            Current data with the reference's columns.

        Returns
        -------
        DriftReport
        """
        check_is_fitted(self, "reference_counts_")
        feats = self._read(X, reset=False, allow_1d=getattr(self, "_one_d", False))
        if self.compat == "evidently":
            return self._compare_evidently(feats)
        return self._report(self._count(feats))

    def psi(self, X):
        """PSI per feature of ``X`` against the reference.

        Returns
        -------
        pandas.Series indexed by feature name when the reference had column
        names, else an ndarray of shape (n_features,).
        """
        return self._by_feature(self.compare(X).psi, "psi")

    def drifted(self, X):
        """Whether each feature's PSI is past ``threshold`` (Series or ndarray)."""
        return self._by_feature(self.compare(X).drifted, "drifted")

    def _by_feature(self, values: np.ndarray, name: str):
        if hasattr(self, "feature_names_in_"):
            import pandas as pd

            return pd.Series(values, index=pd.Index(self.feature_names_in_, name="feature"), name=name)
        return values

    def accumulator(self) -> PSIAccumulator:
        """An empty accumulator: feed it current data batch by batch."""
        check_is_fitted(self, "reference_counts_")
        if self.compat == "evidently":
            raise ValueError(
                "compat='evidently' derives bins from the current data as a whole, so it cannot "
                "accumulate batches; use compat=None or 'feature_engine' to stream"
            )
        return PSIAccumulator(self)

    def _labels(self, j: int) -> list:
        if self.categories_[j] is not None:
            labels = list(self.categories_[j])
        else:
            e = self.bin_edges_[j]
            labels = [f"({a:.6g}, {b:.6g}]" for a, b in zip(e[:-1], e[1:])]
        return labels + (["missing"] if self.missing == "bin" else [])

    def _report(self, cur: _Counts) -> DriftReport:
        d = self.n_features_in_
        psis = np.zeros(d)
        bins, ref_props, cur_props, contribs = [], [], [], []
        n_bins_used = np.zeros(d, dtype=np.int64)
        for j in range(d):
            ref_counts = self.reference_counts_[j]
            cur_counts = self._with_missing(cur.counts[j], cur.missing[j])
            labels = self._labels(j)
            unseen = cur.unseen[j]
            if unseen:
                extra = _sorted_keys(unseen)
                # Categories new in the current data: reference count 0.
                at = len(ref_counts) - (1 if self.missing == "bin" else 0)
                ref_counts = np.insert(ref_counts, at, np.zeros(len(extra), dtype=np.int64))
                cur_counts = np.insert(cur_counts, at, [unseen[c] for c in extra])
                labels = labels[:at] + extra + labels[at:]
            ref_total = self.n_reference_ - (0 if self.missing == "bin" else self.reference_missing_[j])
            cur_total = cur.n_rows - (0 if self.missing == "bin" else cur.missing[j])
            # Bins empty on both sides carry no information (feature-engine
            # never sees them): leave them out.
            seen = (ref_counts > 0) | (cur_counts > 0)
            r = _shares(ref_counts[seen], ref_total, "eps", self.eps)
            c = _shares(cur_counts[seen], cur_total, "eps", self.eps)
            terms = _psi_terms(r, c, None)
            psis[j] = float(np.sum(terms)) if cur_total > 0 else np.nan
            n_bins_used[j] = len(ref_counts)
            bins.append([lab for lab, s in zip(labels, seen) if s])
            ref_props.append(r)
            cur_props.append(c)
            contribs.append(terms)
        return self._make_report(psis, cur.n_rows, n_bins_used, bins, ref_props, cur_props, contribs)

    def _thresholds(self, n_current: int, n_bins: np.ndarray) -> np.ndarray:
        if self.threshold != "auto":
            return np.full(len(n_bins), float(self.threshold))
        from scipy.stats import chi2

        # feature-engine: B is the requested n_bins for numeric features and
        # the number of distinct values for categorical ones.
        b = np.where(self.feature_kinds_ == "numeric", self.n_bins, n_bins)
        scale = 1 / self.n_reference_ + 1 / max(n_current, 1)
        return chi2.ppf(1 - self.p_value, np.maximum(b - 1, 1)) * scale

    def _make_report(self, psis, n_current, n_bins, bins, ref_props, cur_props, contribs):
        thresholds = self._thresholds(n_current, n_bins)
        with np.errstate(invalid="ignore"):
            drifted = psis >= thresholds if self.compat == "evidently" else psis > thresholds
        return DriftReport(
            feature_names=list(self._display_names),
            psi=psis,
            threshold=thresholds,
            drifted=drifted,
            severity=np.asarray([severity(p) if p == p else "unknown" for p in psis], dtype=object),
            bins=bins,
            reference_proportions=ref_props,
            current_proportions=cur_props,
            contributions=contribs,
        )

    def _compare_evidently(self, feats: Features) -> DriftReport:
        d = self.n_features_in_
        psis = np.zeros(d)
        bins, ref_props, cur_props, contribs = [], [], [], []
        n_bins = np.zeros(d, dtype=np.int64)
        numeric = dict(zip(feats.numeric_index, _numeric_columns(feats)))
        for j in range(d):
            if j in numeric:
                ref = self.reference_values_[j]
                cur = numeric[j]
                cur = cur[np.isfinite(cur)]
                if np.unique(ref).size > 20:
                    edges = _sturges_edges(
                        min(ref.min(), cur.min(initial=np.inf)),
                        max(ref.max(), cur.max(initial=-np.inf)),
                        ref.size + cur.size,
                    )
                    cuts = [edges[1:-1]]
                    (rc,), _ = _core.psi_histograms([[ref]], cuts, False, self._threads())
                    (cc,), _ = _core.psi_histograms([[cur]], cuts, False, self._threads())
                    labels = [f"[{a:.6g}, {b:.6g})" for a, b in zip(edges[:-1], edges[1:])]
                else:
                    labels, rc, cc = _value_counts(ref, cur)
                r_total, c_total = ref.size, cur.size
            else:
                cat = feats.categorical[j]
                keys = list(self.categories_[j])
                rc = self.reference_counts_[j][: len(keys)]
                cur_counts, _ = _category_counts(cat.codes, len(cat.categories))
                index = {c: i for i, c in enumerate(keys)}
                cc = np.zeros(len(keys), dtype=np.int64)
                for c, n in zip(cat.categories, cur_counts):
                    if n and c not in index:
                        index[c] = len(keys)
                        keys.append(c)
                        rc = np.append(rc, 0)
                        cc = np.append(cc, 0)
                    if n:
                        cc[index[c]] += n
                labels = keys
                r_total = self.n_reference_ - self.reference_missing_[j]
                c_total = int(np.count_nonzero(cat.codes >= 0))
            if r_total == 0 or c_total == 0:
                psis[j] = np.nan  # evidently: an empty side gives no value
                r = c = terms = np.zeros(0)
            else:
                r = _shares(np.asarray(rc, dtype=np.int64), r_total, "evidently", self.eps)
                c = _shares(np.asarray(cc, dtype=np.int64), c_total, "evidently", self.eps)
                terms = _psi_terms(r, c, "evidently")
                psis[j] = float(np.sum(terms))
            n_bins[j] = len(labels)
            bins.append(labels)
            ref_props.append(r)
            cur_props.append(c)
            contribs.append(terms)
        return self._make_report(psis, feats.n_rows, n_bins, bins, ref_props, cur_props, contribs)


class PSIAccumulator:
    """Current data counted batch by batch against a fitted :class:`PSIDrift`.

    ``update`` any number of batches, then :meth:`report` or :meth:`psi`: the
    result equals one ``compare`` on all the batches concatenated. Two
    accumulators of the same fitted estimator :meth:`merge` (for example one
    per worker). Picklable.
    """

    def __init__(self, estimator: PSIDrift):
        self.estimator = estimator
        self._counts = _Counts(estimator.n_features_in_)
        for j in range(estimator.n_features_in_):
            n = len(estimator.reference_counts_[j]) - (1 if estimator.missing == "bin" else 0)
            self._counts.counts[j] = np.zeros(n, dtype=np.int64)

    @property
    def n_rows(self) -> int:
        """Rows counted so far."""
        return self._counts.n_rows

    def update(self, X) -> PSIAccumulator:
        """Count one batch of current data; returns self."""
        est = self.estimator
        feats = est._read(X, reset=False, allow_1d=getattr(est, "_one_d", False))
        self._counts.add(est._count(feats))
        return self

    def merge(self, other: PSIAccumulator) -> PSIAccumulator:
        """Add another accumulator's counts (same fitted estimator); returns self."""
        if not isinstance(other, PSIAccumulator):
            raise TypeError(f"can only merge a PSIAccumulator, got {type(other).__name__}")
        mine, theirs = self.estimator, other.estimator
        same = mine is theirs or (
            mine.n_features_in_ == theirs.n_features_in_
            and all(_same_bins(a, b) for a, b in zip(mine.bin_edges_, theirs.bin_edges_))
            and all(_same_bins(a, b) for a, b in zip(mine.categories_, theirs.categories_))
            and mine.missing == theirs.missing
        )
        if not same:
            raise ValueError("cannot merge accumulators of estimators fitted with different bins")
        self._counts.add(other._counts)
        return self

    def report(self) -> DriftReport:
        """The :class:`DriftReport` of everything counted so far."""
        if self._counts.n_rows == 0:
            raise ValueError("no current data counted yet; call update() with a batch first")
        return self.estimator._report(self._counts)

    def psi(self):
        """PSI per feature of everything counted so far (Series or ndarray)."""
        return self.estimator._by_feature(self.report().psi, "psi")


def _same_bins(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return len(a) == len(b) and bool(np.all(np.asarray(a) == np.asarray(b)))


def _sorted_keys(d: dict) -> list:
    try:
        return sorted(d)
    except TypeError:
        return list(d)


def _category_counts(codes: np.ndarray, n_categories: int) -> tuple[np.ndarray, int]:
    valid = codes >= 0
    counts = np.bincount(codes[valid], minlength=n_categories).astype(np.int64)
    return counts, int(codes.size - np.count_nonzero(valid))


def _check_valid(feats: Features, idx: list[int], n_valid) -> None:
    for k, j in enumerate(idx):
        if n_valid[k] == 0:
            raise ValueError(
                f"column {feats.label(j)} has no non-missing values in the reference data; "
                "drop it or fill it"
            )


def _numeric_columns(feats: Features):
    """Each numeric feature as one float64 array (compat paths only: copies)."""
    data = feats.numeric
    if data is None:
        return []
    if isinstance(data, np.ndarray):
        return [np.asarray(data[:, k], dtype=np.float64) for k in range(data.shape[1])]
    return [
        np.concatenate(chunks).astype(np.float64, copy=False) if chunks else np.empty(0)
        for chunks in data
    ]


def _value_counts(ref: np.ndarray, cur: np.ndarray):
    keys = np.union1d(np.unique(ref), np.unique(cur))
    rc = np.bincount(np.searchsorted(keys, ref), minlength=keys.size)
    cc = np.bincount(np.searchsorted(keys, cur), minlength=keys.size)
    return list(keys), rc, cc


def psi(
    reference,
    current,
    *,
    n_bins=10,
    strategy="quantile",
    eps=1e-4,
    missing="drop",
    compat=None,
    categorical_features=None,
    n_jobs=None,
):
    """PSI of ``current`` against ``reference``, per feature, in one call.

    Parameters are those of :class:`PSIDrift`. 1-D inputs are one feature.

    Returns
    -------
    float for 1-D input; else a pandas Series indexed by feature name when the
    reference had column names, or an ndarray of shape (n_features,).

    Examples
    --------
    >>> import numpy as np
    >>> from ferromine.drift import psi
    >>> rng = np.random.default_rng(0)
    >>> round(psi(rng.normal(size=10_000), rng.normal(0.25, 1, size=10_000)), 4)
    0.0605
    """
    est = PSIDrift(
        n_bins=n_bins,
        strategy=strategy,
        eps=eps,
        missing=missing,
        compat=compat,
        categorical_features=categorical_features,
        n_jobs=n_jobs,
    )
    est._check_params()
    one_d = _is_one_d(reference)
    feats = read_features(reference, categorical=categorical_features, allow_1d=one_d)
    est._one_d = one_d
    if not one_d:
        est._check_names(reference, feats, reset=True)
    est._fit_features(feats)
    values = est.psi(current)
    return float(np.asarray(values)[0]) if one_d else values


def _is_one_d(X) -> bool:
    if hasattr(X, "ndim"):
        return X.ndim == 1
    if hasattr(X, "schema") or hasattr(X, "columns"):
        return False
    if hasattr(X, "__arrow_c_array__") or hasattr(X, "__arrow_c_stream__"):
        return True
    return np.ndim(X) == 1
