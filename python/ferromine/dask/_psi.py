"""PSI on dask collections: exact quantile edges by default, sketch edges on request."""

from __future__ import annotations

import numpy as np

from .. import _core
from .._intake import _sorted_if_possible, read_features
from ..psi import (
    PSIDrift,
    _category_counts,
    _Counts,
    _numeric_columns,
    _uniform_edges,
    qcut_probabilities,
)
from . import _common as C

_METHODS = ("exact", "approx")


def _read(part, categorical, one_d):
    if isinstance(part, np.ndarray):
        part = np.require(part, requirements="A")  # may arrive misaligned from another process
    return read_features(part, categorical=categorical, allow_1d=one_d)


def _pass_sketch(part, categorical, one_d, grid, strategy):
    """Pass 1 over one reference partition: its kinds and names, per numeric
    feature a quantile sketch (or extent), per categorical feature counts."""
    feats = _read(part, categorical, one_d)
    out = {"n": feats.n_rows, "kinds": list(feats.kinds), "names": feats.names, "numeric": {}, "categorical": {}}
    if feats.n_rows == 0:
        return out
    if feats.numeric_index:
        if strategy == "quantile":
            for j, col in zip(feats.numeric_index, _numeric_columns(feats)):
                q, n_le, n_valid = C.sketch(col, grid)
                out["numeric"][j] = (q, n_le, n_valid, int(col.size - n_valid))
        else:
            lo, hi, n_valid, missing = _core.psi_extents(feats.numeric, 1)
            for k, j in enumerate(feats.numeric_index):
                out["numeric"][j] = (float(lo[k]), float(hi[k]), int(n_valid[k]), int(missing[k]))
    for j, cat in feats.categorical.items():
        counts, missing = _category_counts(cat.codes, len(cat.categories))
        out["categorical"][j] = ({c: int(n) for c, n in zip(cat.categories, counts) if n}, int(missing))
    return out


def _pass_brackets(part, categorical, one_d, brackets):
    """Pass 2 (exact edges): per numeric feature, the bracket counts/values."""
    feats = _read(part, categorical, one_d)
    if feats.n_rows == 0 or not feats.numeric_index:
        return {}
    cols = dict(zip(feats.numeric_index, _numeric_columns(feats)))
    return {j: C.bracket_pass(cols[j], list(br.values())) for j, br in brackets.items()}


def _pass_reference_counts(part, categorical, one_d, cuts):
    feats = _read(part, categorical, one_d)
    if feats.n_rows == 0 or not feats.numeric_index:
        return {}
    counts, _ = _core.psi_histograms(feats.numeric, [cuts[j] for j in feats.numeric_index], True, 1)
    return {j: counts[k].astype(np.int64) for k, j in enumerate(feats.numeric_index)}


def _pass_current(part, est):
    """Current-side counts of one partition in the fitted bins (a _Counts)."""
    if len(part) == 0:
        return None
    if isinstance(part, np.ndarray):
        part = np.require(part, requirements="A")
    feats = est._read(part, reset=False, allow_1d=getattr(est, "_one_d", False))
    return est._count(feats)


def _is_one_d(X) -> bool:
    return getattr(X, "ndim", 2) == 1


def _meta(X):
    """An empty pandas object with X's columns (for scikit-learn's name checks)."""
    return getattr(X, "_meta", None)


def fit_reference(
    reference,
    *,
    n_bins=10,
    strategy="quantile",
    eps=1e-4,
    missing="drop",
    threshold=0.25,
    p_value=0.001,
    compat=None,
    categorical_features=None,
    method="exact",
    sketch_size=C.SKETCH_SIZE,
) -> PSIDrift:
    """A fitted :class:`ferromine.drift.PSIDrift` learned from a dask reference.

    With ``method="exact"`` (the default) its bin edges, categories and counts
    equal ``PSIDrift(...).fit(reference.compute())``; ``"approx"`` takes the
    quantile edges from merged per-partition sketches instead (one pass less;
    see :func:`psi` for the error bound). The estimator is an ordinary
    single-machine one: it pickles to workers and scores NumPy, pandas or dask
    data.
    """
    est = PSIDrift(
        n_bins=n_bins,
        strategy=strategy,
        eps=eps,
        missing=missing,
        threshold=threshold,
        p_value=p_value,
        compat=compat,
        categorical_features=categorical_features,
    )
    est._check_params()
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if compat == "evidently":
        raise ValueError(
            "compat='evidently' derives bins from all current values at once, which a distributed "
            "PSI does not gather; use compat=None or 'feature_engine'"
        )
    if isinstance(sketch_size, bool) or not isinstance(sketch_size, int) or sketch_size < 3:
        raise ValueError(f"sketch_size must be an int >= 3, got {sketch_size!r}")
    one_d = _is_one_d(reference)
    parts = C.partitions(reference)
    cf = categorical_features
    grid = C.sketch_grid(sketch_size)
    first = C.compute([C.delayed(_pass_sketch)(p, cf, one_d, grid, strategy) for p in parts])
    filled = [r for r in first if r["n"] > 0]
    n_rows = sum(r["n"] for r in first)
    if not filled:
        raise ValueError(
            "Found array with 0 sample(s) while a minimum of 1 is required: the reference data is "
            "empty, PSI needs at least one reference row"
        )
    kinds, names = filled[0]["kinds"], filled[0]["names"]
    for r in filled[1:]:
        if r["kinds"] != kinds:
            raise ValueError(
                "the reference partitions disagree on which columns are numeric and which are "
                f"categorical ({kinds} vs {r['kinds']}); give the columns one dtype"
            )
    d = len(kinds)
    if d == 0:
        raise ValueError("Found array with 0 feature(s) while a minimum of 1 is required: PSI needs at least one feature")
    est._one_d = one_d
    meta = _meta(reference)
    if not one_d and meta is not None and hasattr(meta, "columns"):
        est._check_names(meta, None, reset=True)
    numeric = [j for j in range(d) if kinds[j] == "numeric"]
    label = (lambda j: repr(names[j])) if names else (lambda j: f"{j} (column index)")

    est.feature_kinds_ = np.asarray(kinds, dtype=object)
    est._display_names = list(names) if names else [f"x{j}" for j in range(d)]
    est.bin_edges_ = [None] * d
    est.categories_ = [None] * d
    est.reference_counts_ = [None] * d
    est.reference_missing_ = np.zeros(d, dtype=np.int64)
    est.n_reference_ = n_rows

    n_valid = {j: sum(r["numeric"][j][2] for r in filled) for j in numeric}
    n_missing = {j: sum(r["numeric"][j][3] for r in filled) for j in numeric}
    for j in numeric:
        if n_valid[j] == 0:
            raise ValueError(
                f"column {label(j)} has no non-missing values in the reference data; drop it or fill it"
            )
    cuts = {}
    if numeric and strategy == "quantile":
        fe = compat == "feature_engine"
        probs = qcut_probabilities(n_bins)
        probs = probs if fe else probs[1:-1]
        bounds = {j: C.RankBounds([r["numeric"][j][:2] + (r["numeric"][j][2],) for r in filled]) for j in numeric}
        values = {}
        if method == "exact":
            plan = {j: {} for j in numeric}
            for j in numeric:
                for p in probs:
                    lo, hi, _ = C.ranks_rust(n_valid[j], float(p))
                    for rank in (lo, hi):
                        plan[j].setdefault(rank, bounds[j].bracket(rank))
            second = C.compute([C.delayed(_pass_brackets)(p, cf, one_d, plan) for p in parts])
            for j in numeric:
                stats = dict(zip(plan[j], C.resolve_brackets(plan[j], [r[j] for r in second if j in r])))
                values[j] = np.asarray(
                    [C.lerp_rust(stats[lo], stats[hi], t) for lo, hi, t in (C.ranks_rust(n_valid[j], float(p)) for p in probs)]
                )
        else:
            for j in numeric:
                values[j] = np.asarray(
                    [bounds[j].approximate(C.ranks_rust(n_valid[j], float(p))[0] + C.ranks_rust(n_valid[j], float(p))[2])[0] for p in probs]
                )
        for j in numeric:
            edges = np.unique(values[j])
            cuts[j] = edges[1:-1] if fe else edges
    elif numeric:
        for j in numeric:
            ext = [r["numeric"][j] for r in filled if r["numeric"][j][2] > 0]
            lo = min(e[0] for e in ext)
            hi = max(e[1] for e in ext)
            cuts[j] = _uniform_edges(lo, hi, n_bins)[1:-1]
    if numeric:
        third = C.compute([C.delayed(_pass_reference_counts)(p, cf, one_d, cuts) for p in parts])
        for j in numeric:
            counts = sum(r[j] for r in third if j in r)
            est._set_numeric(j, cuts[j], counts, n_missing[j])
    for j in range(d):
        if kinds[j] != "categorical":
            continue
        merged: dict = {}
        missing_j = 0
        for r in filled:
            counts, m = r["categorical"][j]
            missing_j += m
            for c, n in counts.items():
                merged[c] = merged.get(c, 0) + n
        cats = _sorted_if_possible(list(merged))
        est.categories_[j] = np.asarray(cats, dtype=object)
        est.reference_counts_[j] = est._with_missing(np.asarray([merged[c] for c in cats], dtype=np.int64), missing_j)
        est.reference_missing_[j] = missing_j
    est.reference_proportions_ = [
        counts / max(1, est.n_reference_ - (0 if est.missing == "bin" else est.reference_missing_[j]))
        for j, counts in enumerate(est.reference_counts_)
    ]
    est.n_features_in_ = d
    return est


def compare(estimator: PSIDrift, current):
    """The :class:`ferromine.drift.DriftReport` of a dask (or in-memory)
    ``current`` against a fitted estimator: per-partition bin counts merged."""
    parts = C.partitions(current)
    counts = [c for c in C.compute([C.delayed(_pass_current)(p, estimator) for p in parts]) if c is not None]
    total = _Counts(estimator.n_features_in_)
    for j in range(estimator.n_features_in_):
        n = len(estimator.reference_counts_[j]) - (1 if estimator.missing == "bin" else 0)
        total.counts[j] = np.zeros(n, dtype=np.int64)
    for c in counts:
        total.add(c)
    if total.n_rows == 0:
        raise ValueError("the current data is empty; PSI needs at least one current row")
    return estimator._report(total)


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
    method="exact",
    sketch_size=C.SKETCH_SIZE,
):
    """PSI of ``current`` against ``reference`` (dask collections), per feature.

    Same parameters and result as :func:`ferromine.drift.psi`. ``method="exact"``
    (default) finds the quantile edges exactly in two passes over the reference
    (a per-partition quantile sketch brackets every needed order statistic; a
    second pass gathers only the values inside the brackets), so the PSI equals
    the single-machine value on the concatenated data; a third pass counts the
    reference bins and one pass counts the current bins. ``method="approx"``
    takes the edges from the merged sketches: each edge is a value whose rank
    in the reference is within ``sum_p ceil(n_p / (sketch_size - 1))`` of the
    requested rank (``n_p`` the valid rows of partition ``p``), so every
    reference bin's share is off by at most ``2 / (sketch_size - 1) + 2P / N``
    (``P`` partitions, ``N`` rows); the counts in those bins are exact.
    ``compat="evidently"`` is not supported (its bins need all current values).

    Returns
    -------
    float for 1-D input; else a pandas Series (named columns) or an ndarray.
    """
    est = fit_reference(
        reference,
        n_bins=n_bins,
        strategy=strategy,
        eps=eps,
        missing=missing,
        compat=compat,
        categorical_features=categorical_features,
        method=method,
        sketch_size=sketch_size,
    )
    values = compare(est, current).psi
    if est._one_d:
        return float(values[0])
    return est._by_feature(values, "psi")
