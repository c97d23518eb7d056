"""Frequent itemsets (FP-Growth, closed, maximal) and association rules.

Drop-in replacements for ``mlxtend.frequent_patterns.fpgrowth``, ``fpmax``
and ``association_rules`` (mlxtend 0.25.0 semantics and output), plus
``fpclosed``, columnar outputs (``output="arrow" | "polars" | "count"``),
more inputs (scipy sparse, lists of transactions, Arrow list columns, FIMI
``.dat`` files) and an sklearn-style :class:`FPGrowth` estimator. The mining
and the rule metrics run in Rust (:mod:`ferromine._core`).
"""

from __future__ import annotations

import gzip
import itertools
import numbers
import os
import warnings
from collections.abc import Hashable, Iterable, Sequence
from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from . import _core
from ._threads import resolve_n_jobs

__all__ = [
    "FPGrowth",
    "TransactionEncoder",
    "association_rules",
    "fpclosed",
    "fpgrowth",
    "fpmax",
    "read_transactions",
]

Output = Literal["pandas", "arrow", "polars", "count"]

#: mlxtend's 12 rule metrics, in its column order.
METRICS: list[str] = [
    "antecedent support",
    "consequent support",
    "support",
    "confidence",
    "lift",
    "representativity",
    "leverage",
    "conviction",
    "zhangs_metric",
    "jaccard",
    "certainty",
    "kulczynski",
]

#: Default guard: refuse results with more itemsets than this (except
#: ``output="count"``), before they exhaust memory.
DEFAULT_MAX_ITEMSETS = 50_000_000

#: Default guard of :func:`association_rules` (except ``output="count"``).
DEFAULT_MAX_RULES = 50_000_000


# --------------------------------------------------------------------------
# Intake: everything becomes CSR (indptr, indices) over item ids 0..n_items.
# --------------------------------------------------------------------------


class _Transactions:
    """Transactions as CSR plus the label of every item id (or None)."""

    __slots__ = ("indptr", "indices", "n_items", "labels", "nan")

    def __init__(
        self,
        indptr: np.ndarray,
        indices: np.ndarray,
        n_items: int,
        labels: list[Any] | None,
        nan: np.ndarray | None = None,
    ) -> None:
        self.indptr = np.ascontiguousarray(indptr)
        self.indices = np.ascontiguousarray(indices)
        self.n_items = int(n_items)
        self.labels = labels
        # null_values=True with NaN: the (n, n_items) NaN mask; the CSR then
        # holds the cells that are 1 *or* NaN, as mlxtend's tree does.
        self.nan = nan

    @property
    def n(self) -> int:
        return len(self.indptr) - 1


_BAD_VALUES = "The allowed values for a DataFrame are True, False, 0, 1. Found value %s"
_BAD_VALUES_NULL = "The allowed values for a DataFrame are True, False, 0, 1, NaN. Found value %s"
_NON_BOOL = (
    "DataFrames with non-bool types result in worse computational"
    "performance and their support might be discontinued in the future."
    "Please use a DataFrame with bool type"
)


def _check_values(values: np.ndarray) -> None:
    """mlxtend's checks for non-bool one-hot data (after its warning)."""
    if values.dtype.kind == "f" and np.isnan(values).any():
        raise ValueError("NaN values are not permitted in the DataFrame when null_values=False.")
    bad = (values != 0) & (values != 1)
    if bad.any():
        raise ValueError(_BAD_VALUES % values[np.nonzero(bad)][0])


def _csr_of_dense(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR of a 2-D bool matrix, in Rust: np.nonzero over a 2-D array is
    ~20x slower, and a frame's values are column-major (read as they are)."""
    arr = np.asarray(arr, dtype=bool)
    if arr.flags.c_contiguous:
        return _core.fp_csr_of_dense(arr.view(np.uint8), False)
    if arr.flags.f_contiguous:
        return _core.fp_csr_of_dense(arr.T.view(np.uint8), True)
    return _core.fp_csr_of_dense(np.ascontiguousarray(arr).view(np.uint8), False)


def _from_scipy(X: Any) -> tuple[np.ndarray, np.ndarray, int]:
    X = X.tocsr()
    data = np.asarray(X.data)
    if data.dtype != bool:
        _check_values(data)
    if np.count_nonzero(data) != len(data):  # explicit zeros are absent items (no temporary)
        X = X.copy()
        X.eliminate_zeros()
    return np.asarray(X.indptr), np.asarray(X.indices), X.shape[1]


def _from_frame(df: Any, null_values: bool) -> _Transactions:
    import pandas as pd

    labels = list(df.columns)
    n = len(df.index)
    if df.shape[1] == 0 or n == 0:
        return _Transactions(np.zeros(n + 1, dtype=np.int64), np.zeros(0, np.int64), df.shape[1], labels)
    dtypes = list(df.dtypes)
    all_bool = all(pd.api.types.is_bool_dtype(d) for d in dtypes)
    is_sparse = all(isinstance(d, pd.SparseDtype) for d in dtypes)
    if null_values and not all_bool:
        # mlxtend's test with null_values: every cell NaN or a bool.
        all_bool = all(
            pd.api.types.is_bool_dtype(d)
            or (d == object and all(isinstance(x, bool) for x in df[c].dropna()))
            for c, d in zip(df.columns, dtypes)
        )
    if not all_bool:
        warnings.warn(_NON_BOOL, DeprecationWarning, stacklevel=4)
    if not null_values:
        # Nullable extension columns ("boolean", "Int64") hold NA that NumPy
        # conversion would reject with an unrelated message.
        masked = [c for c, d in zip(df.columns, dtypes) if isinstance(d, pd.api.extensions.ExtensionDtype)
                  and not isinstance(d, pd.SparseDtype)]
        if masked and bool(df[masked].isna().to_numpy().any()):
            raise ValueError("NaN values are not permitted in the DataFrame when null_values=False.")
    if null_values:
        has_nan = bool(df.isna().to_numpy().any())
        if has_nan:
            return _from_frame_with_nan(df, labels)
        warnings.warn(
            "null_values=True is inefficient when there are no NaN values in the DataFrame."
            "Set null_values=False for faster output.",
            stacklevel=4,
        )
    if is_sparse:
        # Column by column into COO: the frame is never densified.
        indptr, indices, _ = _from_scipy(df.sparse.to_coo())
        return _Transactions(indptr, indices, df.shape[1], labels)
    if any(isinstance(d, pd.SparseDtype) for d in dtypes):
        df = df.sparse.to_dense() if hasattr(df, "sparse") else df.astype(
            {c: d.subtype for c, d in zip(df.columns, dtypes) if isinstance(d, pd.SparseDtype)}
        )
    if all_bool:
        arr = df.to_numpy(dtype=bool)
    else:
        values = df.to_numpy()
        if values.dtype == object:
            values = values.astype(np.float64)
        _check_values(values)
        arr = values != 0
    indptr, indices = _csr_of_dense(arr)
    return _Transactions(indptr, indices, df.shape[1], labels)


def _from_frame_with_nan(df: Any, labels: list[Any]) -> _Transactions:
    """A one-hot frame with NaN, for mlxtend's ``null_values=True`` mode."""
    import pandas as pd

    if any(isinstance(d, pd.SparseDtype) for d in df.dtypes):
        df = df.sparse.to_dense() if hasattr(df, "sparse") else df.astype(
            {c: d.subtype for c, d in zip(df.columns, df.dtypes) if isinstance(d, pd.SparseDtype)}
        )
    nan = np.ascontiguousarray(df.isna().to_numpy(dtype=bool))
    try:
        values = df.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        raw = df.to_numpy(dtype=object)
        bad = [x for x in raw[~nan] if not (isinstance(x, (bool, numbers.Real)) and x in (0, 1))]
        raise ValueError(_BAD_VALUES_NULL % (bad[0] if bad else raw[~nan][0])) from None
    bad = ~nan & (values != 0) & (values != 1)
    if bad.any():
        raise ValueError(_BAD_VALUES_NULL % values[np.nonzero(bad)][0])
    indptr, indices = _csr_of_dense(nan | (values == 1))
    return _Transactions(indptr, indices, df.shape[1], labels, nan)


def _sorted_vocabulary(items: Iterable[Hashable]) -> list[Any]:
    unique = list(dict.fromkeys(items))
    try:
        return sorted(unique)
    except TypeError:  # items of mixed, incomparable types: first-seen order
        return unique


def _from_lists(transactions: Sequence[Iterable[Hashable]]) -> _Transactions:
    rows = [t if hasattr(t, "__len__") else list(t) for t in transactions]
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    flat = list(itertools.chain.from_iterable(rows))
    vocab = _sorted_vocabulary(flat)
    index = {item: i for i, item in enumerate(vocab)}
    indices = np.fromiter(map(index.__getitem__, flat), dtype=np.int64, count=len(flat))
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    return _Transactions(indptr, indices, len(vocab), vocab)


def _arrow_list(obj: Any) -> Any | None:
    """A pyarrow list array for Arrow list data (pyarrow, polars), else None."""
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - pyarrow is optional
        return None
    if isinstance(obj, pa.ChunkedArray):
        arr = obj.combine_chunks() if obj.num_chunks != 1 else obj.chunk(0)
    elif isinstance(obj, pa.Array):
        arr = obj
    elif type(obj).__module__.startswith("polars") and hasattr(obj, "to_arrow"):
        if hasattr(obj, "columns"):  # a polars DataFrame: not a list column
            return None
        arr = obj.to_arrow()
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
    else:
        return None
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_list_view(arr.type)):
        raise TypeError(f"an Arrow input must be a list column (one list of items per transaction), got {arr.type}")
    return arr


def _from_arrow(arr: Any) -> _Transactions:
    import pyarrow as pa
    import pyarrow.compute as pc

    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
    values = pc.list_flatten(arr)
    if values.null_count:
        raise ValueError("an Arrow list column has a null item; drop nulls from the lists first")
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    if pa.types.is_string_view(values.type):
        values = values.cast(pa.large_string())
    indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    if pa.types.is_integer(values.type) and len(values):
        # Small non-negative ids (FIMI files, make_transactions): the sorted
        # vocabulary and the dense ids by one bincount, not a hash and a sort.
        v = values.to_numpy(zero_copy_only=False)
        lo, hi = int(v.min()), int(v.max())
        if lo >= 0 and hi <= 4 * len(v) + (1 << 20):
            present = np.bincount(v, minlength=hi + 1) > 0
            dense = np.cumsum(present, dtype=np.int32 if hi < 2**31 else np.int64) - 1
            return _Transactions(indptr, dense[v], int(present.sum()), np.flatnonzero(present).tolist())
    vocab_arr = pc.unique(values)
    vocab_arr = vocab_arr.take(pc.sort_indices(vocab_arr))
    ids = pc.index_in(values, value_set=vocab_arr).to_numpy(zero_copy_only=False).astype(np.int64)
    return _Transactions(indptr, ids, len(vocab_arr), vocab_arr.to_pylist())


def _intake(data: Any, null_values: bool = False) -> _Transactions:
    import scipy.sparse as sp

    if isinstance(data, _Transactions):
        return data
    if type(data).__name__ == "SparseDataFrame":
        raise TypeError("SparseDataFrame is no longer supported by pandas; use a DataFrame of SparseDtype columns")
    mod = type(data).__module__
    if mod.startswith("pandas") and hasattr(data, "columns"):
        return _from_frame(data, null_values)
    if sp.issparse(data):
        if data.ndim != 2:
            raise ValueError("a sparse one-hot matrix must be 2-D")
        indptr, indices, m = _from_scipy(data)
        return _Transactions(indptr, indices, m, None)
    if isinstance(data, np.ndarray):
        if data.ndim != 2:
            raise ValueError(f"a one-hot array must be 2-D (transactions x items), got {data.ndim}-D")
        arr = data
        if arr.dtype != bool:
            warnings.warn(_NON_BOOL, DeprecationWarning, stacklevel=3)
            _check_values(arr)
            arr = arr != 0
        indptr, indices = _csr_of_dense(arr)
        return _Transactions(indptr, indices, data.shape[1], None)
    if mod.startswith("polars") and hasattr(data, "columns"):
        return _from_frame(data.to_pandas(), null_values)
    arr = _arrow_list(data)
    if arr is not None:
        return _from_arrow(arr)
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise TypeError(
            "expected a one-hot DataFrame (bool columns, dense or sparse), a scipy sparse matrix, "
            f"a list of transactions or an Arrow list column, got {type(data).__name__}"
        )
    return _from_lists(list(data))


def read_transactions(path: str | os.PathLike[str]) -> Any:
    """Read a FIMI ``.dat`` file: one transaction per line, items separated by
    whitespace. ``.gz`` files are decompressed on the fly; blank lines are
    empty transactions.

    Returns
    -------
    pyarrow.LargeListArray
        One list per transaction, of int64 items when every item is an
        integer, else of strings. Pass it to :func:`fpgrowth` directly (no
        per-item Python objects are made), or call ``.to_pylist()``.
    """
    import pyarrow as pa

    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    with opener(path, "rb") as f:  # type: ignore[operator]
        data = f.read()
    lines = data.splitlines()
    if lines and not lines[-1].strip():
        lines.pop()
    lengths = np.fromiter((len(line.split()) for line in lines), dtype=np.int64, count=len(lines))
    tokens = data.split()
    try:
        values: Any = pa.array(np.array(tokens).astype(np.int64) if tokens else np.zeros(0, np.int64))
    except ValueError:
        values = pa.array([t.decode() for t in tokens], pa.large_string())
    offsets = np.zeros(len(lines) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pa.LargeListArray.from_arrays(pa.array(offsets), values)


# --------------------------------------------------------------------------
# Mining
# --------------------------------------------------------------------------


def _min_count(min_support: float | int, n: int) -> int:
    """One threshold for every itemset size: the smallest count c with
    c / n >= min_support (a float fraction), or the int itself as a count."""
    if isinstance(min_support, (bool, np.bool_)):
        raise TypeError("min_support must be a float fraction in (0, 1] or an int count >= 1, got a bool")
    if isinstance(min_support, numbers.Integral):
        if min_support < 1:
            raise ValueError(f"`min_support` as an absolute count must be >= 1. Got {min_support}.")
        # A count above n finds nothing; clamp it so it fits the kernel's u64.
        return min(int(min_support), n + 1)
    if not isinstance(min_support, numbers.Real):
        raise TypeError(f"min_support must be a float or an int, got {type(min_support).__name__}")
    ms = float(min_support)
    if not (0.0 < ms <= 1.0):
        raise ValueError("`min_support` must be a positive number within the interval `(0, 1]`. Got %s." % min_support)
    c = min(int(np.ceil(ms * n)), n)
    while c > 0 and (c - 1) / n >= ms:
        c -= 1
    while c < n and c / n < ms:
        c += 1
    return max(c, 1)


def _check_limit(name: str, value: Any) -> None:
    """A result-size guard: None or an int >= 0."""
    if value is not None and (
        isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 0
    ):
        raise ValueError(f"{name} must be None or an int >= 0, got {value!r}")


def _check_max_len(max_len: int | None) -> int | None:
    if max_len is None:
        return None
    if isinstance(max_len, bool) or not isinstance(max_len, numbers.Integral) or max_len < 1:
        raise ValueError(f"max_len must be None or an int >= 1, got {max_len!r}")
    return int(max_len)


def _check_output(output: str) -> None:
    if output not in ("pandas", "arrow", "polars", "count"):
        raise ValueError(f"output must be 'pandas', 'arrow', 'polars' or 'count', got {output!r}")


def _frozensets(offsets: np.ndarray, items: np.ndarray, labels: list[Any] | None) -> np.ndarray:
    """The frozenset column as an object array, built in Rust with the cyclic
    GC paused (the new sets cannot form cycles, and the collections millions
    of fresh containers would trigger cost more than building them); the sets
    are untracked from the GC when their elements allow it."""
    return _core.fp_frozensets(offsets, items, labels)


def _itemset_frame(
    offsets: np.ndarray,
    items: np.ndarray,
    support: np.ndarray,
    labels: list[Any] | None,
    use_colnames: bool,
    output: str,
    names: tuple[str, str] = ("support", "itemsets"),
) -> Any:
    if output == "pandas":
        import pandas as pd

        sets = _frozensets(offsets, items, labels if use_colnames else None)
        # Both columns are fresh arrays: no copy, no inference over the objects.
        return pd.DataFrame({names[0]: support, names[1]: sets}, copy=False)
    import pyarrow as pa

    values: Any = pa.array(items)
    if use_colnames and labels is not None:
        values = pa.array(labels).take(values)
    # Offsets fit in int64: a view, not a copy.
    lists = pa.LargeListArray.from_arrays(pa.array(offsets.view(np.int64)), values)
    table = pa.table({names[0]: pa.array(support), names[1]: lists})
    if output == "polars":
        import polars as pl

        return pl.from_arrow(table)
    return table


def _mine(
    data: Any,
    kind: str,
    min_support: float | int,
    null_values: bool,
    use_colnames: bool,
    max_len: int | None,
    output: str,
    max_itemsets: int | None,
    n_jobs: int | None,
) -> Any:
    _check_output(output)
    max_len = _check_max_len(max_len)
    tx = _intake(data, null_values)
    if tx.nan is not None:
        return _mine_with_nan(tx, kind, min_support, use_colnames, max_len, output, max_itemsets, n_jobs)
    n = tx.n
    if n == 0:
        min_count = 1
        _min_count(min_support, 1)  # still validate the parameter
    else:
        min_count = _min_count(min_support, n)
    _check_limit("max_itemsets", max_itemsets)
    count_only = output == "count"
    offsets, items, counts, n_itemsets = _core.fp_mine(
        tx.indptr,
        tx.indices,
        tx.n_items,
        min_count,
        kind=kind,
        max_len=max_len,
        max_itemsets=None if max_itemsets is None else int(max_itemsets),
        count_only=count_only,
        n_threads=resolve_n_jobs(n_jobs),
    )
    if count_only:
        return int(n_itemsets)
    support = counts.astype(np.float64)
    support /= float(max(n, 1))
    return _itemset_frame(offsets, items, support, tx.labels, use_colnames, output)


def _bitsets(mask: np.ndarray) -> list[int]:
    """Each column of a bool matrix as a Python int bitset over its rows."""
    packed = np.packbits(mask, axis=0, bitorder="little")
    return [int.from_bytes(packed[:, j].tobytes(), "little") for j in range(mask.shape[1])]


def _mine_with_nan(
    tx: _Transactions,
    kind: str,
    min_support: float | int,
    use_colnames: bool,
    max_len: int | None,
    output: str,
    max_itemsets: int | None,
    n_jobs: int | None,
) -> Any:
    """mlxtend's ``null_values=True`` semantics (``fpcommon.setup_fptree`` and
    ``generate_itemsets``): an item enters when ``count(1) / (n - count(NaN))
    >= min_support``; the candidates are the itemsets of those items whose
    count, with NaN counted as present, reaches the threshold (for fpmax the
    maximal ones, for fpclosed the closed ones, in that database), plus every
    entered single item below it; each gets ``support = rows with all items 1
    / (n - rows with a NaN among its items)`` (0 when no row is left) and is
    kept when that is ``>= min_support`` (the candidates are not revised
    after this filter, as in mlxtend's fpmax)."""
    n = tx.n
    min_count = _min_count(min_support, n)
    frac = min_support / n if isinstance(min_support, numbers.Integral) else float(min_support)
    nan = tx.nan
    m = tx.n_items
    present = np.zeros((n, m), dtype=bool)
    rows = np.repeat(np.arange(n), np.diff(tx.indptr))
    present[rows, tx.indices] = True
    n_nan = nan.sum(axis=0)
    ones = present.sum(axis=0) - n_nan
    left = n - n_nan
    with np.errstate(divide="ignore", invalid="ignore"):
        allowed = np.where(left > 0, ones / np.maximum(left, 1), 0.0) >= frac
    present &= allowed[None, :]
    indptr, indices = _csr_of_dense(present)
    offsets, items, counts, _ = _core.fp_mine(
        indptr,
        np.ascontiguousarray(indices),
        m,
        min_count,
        kind=kind,
        max_len=max_len,
        max_itemsets=None if max_itemsets is None else int(max_itemsets),
        n_threads=resolve_n_jobs(n_jobs),
    )
    # Entered items below the count threshold are candidates too (mlxtend
    # yields every item of its first tree; in fpmax each is a one-item path
    # that no frequent set contains, so it is reported as maximal).
    counted = present.sum(axis=0)
    extra = np.flatnonzero(allowed & (counted < min_count))
    sets = [items[offsets[k] : offsets[k + 1]] for k in range(len(counts))]
    sets += [np.array([j], dtype=np.uint32) for j in extra]
    counts_all = counts.tolist() + counted[extra].tolist()
    # Only rows with a NaN differ between "present" and "1": bitsets over them.
    nan_rows = np.flatnonzero(nan.any(axis=1))
    p_bits = _bitsets(present[nan_rows])
    n_bits = _bitsets(nan[nan_rows])
    keep_sets, support = [], []
    for items_k, c in zip(sets, counts_all):
        both, any_nan = -1, 0
        for j in items_k.tolist():
            both &= p_bits[j]
            any_nan |= n_bits[j]
        den = n - any_nan.bit_count()
        sup = (c - (both & any_nan).bit_count()) / den if den else 0.0
        if sup >= frac:
            keep_sets.append(items_k)
            support.append(sup)
    if output == "count":
        return len(keep_sets)
    lengths = np.fromiter(map(len, keep_sets), dtype=np.int64, count=len(keep_sets))
    out_offsets = np.zeros(len(keep_sets) + 1, dtype=np.uint64)
    np.cumsum(lengths, out=out_offsets[1:])
    out_items = np.concatenate(keep_sets).astype(np.uint32) if keep_sets else np.zeros(0, np.uint32)
    return _itemset_frame(
        out_offsets, out_items, np.asarray(support, dtype=np.float64), tx.labels, use_colnames, output
    )


_MINE_DOC = """
    Parameters
    ----------
    df : DataFrame, scipy sparse matrix, list of transactions or Arrow list column
        One-hot pandas DataFrame (bool columns, dense or ``SparseDtype``; 0/1
        ints work with mlxtend's DeprecationWarning), a scipy CSR/CSC matrix,
        a bool NumPy array, a list of transactions (iterables of hashable
        items; columns are the sorted distinct items, as
        :class:`TransactionEncoder` makes them), or a pyarrow/polars list
        column (a null list is an empty transaction, a null item is an error).
    min_support : float or int, default 0.5
        A float is a fraction in (0, 1]: an itemset is frequent when its count
        c satisfies ``c / n_transactions >= min_support`` (one rule for every
        itemset size). An int >= 1 is an absolute count.
    null_values : bool, default False
        mlxtend's switch for NaN in the frame; NaN raises ValueError without
        it. With it, :func:`fpgrowth` follows mlxtend: an itemset's support is
        (rows where all its items are 1) / (rows without NaN among its
        items). :func:`fpmax` follows mlxtend's fpmax: the maximal itemsets
        with NaN counted as present, then that support filter;
        :func:`fpclosed` the same with the closed itemsets.
    use_colnames : bool, default False
        Items as column labels (or the transaction items) instead of column
        positions.
    max_len : int or None
        Longest itemset reported (mlxtend's semantics for fpmax: the maximal
        itemsets of at most this length).
    verbose : int
        Accepted for mlxtend compatibility; ignored.
    output : {"pandas", "arrow", "polars", "count"}, default "pandas"
        "pandas": mlxtend's frame (``support`` float64, ``itemsets``
        frozensets). "arrow": a pyarrow Table with ``support`` and an
        ``itemsets`` large_list column. "polars": the same as a polars frame.
        "count": just the number of itemsets (nothing is built).
    max_itemsets : int or None, default 50_000_000
        Refuse (ValueError) a result with more itemsets, while mining, before
        memory runs out. None: no limit. :func:`fpgrowth` ignores it for
        ``output="count"``; :func:`fpclosed` and :func:`fpmax` gather their
        candidates before filtering them, so for them it bounds a count too.
    n_jobs : int or None
        Threads; None: all physical cores (see :func:`ferromine.get_num_threads`).
        The result, including its row order, is the same for any value.

    Returns
    -------
    DataFrame, pyarrow.Table, polars.DataFrame or int
"""


def fpgrowth(
    df: Any,
    min_support: float | int = 0.5,
    null_values: bool = False,
    use_colnames: bool = False,
    max_len: int | None = None,
    verbose: int = 0,
    *,
    output: Output = "pandas",
    max_itemsets: int | None = DEFAULT_MAX_ITEMSETS,
    n_jobs: int | None = None,
) -> Any:
    return _mine(
        df,
        "all",
        min_support,
        null_values,
        use_colnames,
        max_len,
        output,
        None if output == "count" else max_itemsets,
        n_jobs,
    )


def fpmax(
    df: Any,
    min_support: float | int = 0.5,
    null_values: bool = False,
    use_colnames: bool = False,
    max_len: int | None = None,
    verbose: int = 0,
    *,
    output: Output = "pandas",
    max_itemsets: int | None = DEFAULT_MAX_ITEMSETS,
    n_jobs: int | None = None,
) -> Any:
    return _mine(df, "maximal", min_support, null_values, use_colnames, max_len, output, max_itemsets, n_jobs)


def fpclosed(
    df: Any,
    min_support: float | int = 0.5,
    null_values: bool = False,
    use_colnames: bool = False,
    max_len: int | None = None,
    verbose: int = 0,
    *,
    output: Output = "pandas",
    max_itemsets: int | None = DEFAULT_MAX_ITEMSETS,
    n_jobs: int | None = None,
) -> Any:
    return _mine(df, "closed", min_support, null_values, use_colnames, max_len, output, max_itemsets, n_jobs)


fpgrowth.__doc__ = "All frequent itemsets (FP-Growth), as mlxtend's ``fpgrowth``.\n" + _MINE_DOC
fpmax.__doc__ = "Maximal frequent itemsets, as mlxtend's ``fpmax``.\n" + _MINE_DOC
fpclosed.__doc__ = (
    "Closed frequent itemsets (no superset has the same support); mlxtend has no equivalent.\n"
    + _MINE_DOC
)


# --------------------------------------------------------------------------
# Association rules
# --------------------------------------------------------------------------


def _itemset_column(df: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Any]]:
    """(offsets u64, items u32, supports f64, vocabulary) of an itemset frame."""
    mod = type(df).__module__
    if mod.startswith("pandas"):
        if not all(c in df.columns for c in ("support", "itemsets")):
            raise ValueError("Dataframe needs to contain the columns 'support' and 'itemsets'")
        supports = np.ascontiguousarray(df["support"].to_numpy(dtype=np.float64))
        sets = df["itemsets"].tolist()
        if sets and not isinstance(sets[0], (frozenset, set, list, tuple)) and hasattr(sets[0], "tolist"):
            sets = [s.tolist() for s in sets]
        lengths = np.fromiter(map(len, sets), dtype=np.int64, count=len(sets))
        flat = [int(x) if isinstance(x, np.generic) else x for x in itertools.chain.from_iterable(sets)]
        vocab = list(dict.fromkeys(flat))
        index = {x: i for i, x in enumerate(vocab)}
        items = np.fromiter(map(index.__getitem__, flat), dtype=np.uint32, count=len(flat))
        offsets = np.zeros(len(sets) + 1, dtype=np.uint64)
        np.cumsum(lengths, out=offsets[1:])
        return offsets, items, supports, vocab
    # Columnar results (pyarrow Table, polars DataFrame).
    names = df.column_names if hasattr(df, "column_names") else list(df.columns)
    if not all(c in names for c in ("support", "itemsets")):
        raise ValueError("Dataframe needs to contain the columns 'support' and 'itemsets'")
    if mod.startswith("polars"):
        supports = df["support"].to_numpy().astype(np.float64)
        column = df["itemsets"]
    else:
        supports = np.asarray(df.column("support").to_numpy(), dtype=np.float64)
        column = df.column("itemsets")
    arr = _arrow_list(column)
    if arr is None:
        raise TypeError("the itemsets column must be a list column")
    tx = _from_arrow(arr)
    return (
        tx.indptr.astype(np.uint64),
        tx.indices.astype(np.uint32),
        np.ascontiguousarray(supports),
        tx.labels or [],
    )


def _rules_with_nan(
    tx: _Transactions,
    offsets: np.ndarray,
    items: np.ndarray,
    supports: np.ndarray,
    vocab: list[Any],
    n: float,
    metric: str,
    min_threshold: float,
    return_metrics: list[str],
    max_antecedent_len: int | None,
    max_consequent_len: int | None,
    max_rules: int | None,
    output: str,
    n_jobs: int | None,
) -> Any:
    """mlxtend's ``null_values=True`` rules (``rasbt/mlxtend#1106``): per rule
    A -> C, over the rows of ``df_orig``, disAC / disA / disC count the rows
    with a NaN among the columns of A and C / A / C, dis_int the rows with a
    NaN in C and every item of A equal to 1, dis_int_ the same with A and C
    swapped; then confidence = sAC (n - disAC) / (sA (n - disA) - dis_int),
    representativity = (n - disAC) / n, kulczynski from both directions, and
    the other metrics from these as without missing values."""
    # Every split of every itemset, with sA and sC looked up (KeyError as
    # mlxtend when one is missing); the threshold comes after the counts.
    a_off, a_items, c_off, c_items, values, n_rules = _core.fp_rules(
        offsets, items, supports, METRICS.index("support"), -np.inf,
        max_antecedent_len=max_antecedent_len, max_consequent_len=max_consequent_len,
        num_itemsets=n, n_threads=resolve_n_jobs(n_jobs),
    )
    # Item labels -> df_orig column positions: strings are labels, ints
    # positions (as mlxtend's "disabled" frame names its columns).
    labels = tx.labels or []
    pos = {lab: j for j, lab in enumerate(labels)}

    def column(x: Any) -> int:
        if isinstance(x, str) and x in pos:
            return pos[x]
        if isinstance(x, numbers.Integral) and not isinstance(x, bool) and 0 <= int(x) < tx.n_items:
            return int(x)
        if x in pos:
            return pos[x]
        raise KeyError(f"item {x!r} of the itemsets is not a column of df_orig")

    col_of = np.array([column(x) for x in vocab], dtype=np.int64)
    nan = tx.nan
    rows = np.flatnonzero(nan.any(axis=1))  # only rows with a NaN add to the counts
    present = np.zeros((len(rows), tx.n_items), dtype=bool)
    # present = 1 or NaN in the CSR; ones = exactly 1.
    sub = np.zeros(tx.n, dtype=np.int64) - 1
    sub[rows] = np.arange(len(rows))
    r_of = np.repeat(np.arange(tx.n), np.diff(tx.indptr))
    keep = sub[r_of] >= 0
    present[sub[r_of[keep]], np.asarray(tx.indices)[keep]] = True
    ones = present & ~nan[rows]
    nan_bits = _bitsets(nan[rows])
    one_bits = _bitsets(ones)
    full = (1 << len(rows)) - 1

    def bits(off: np.ndarray, it: np.ndarray, k: int) -> tuple[int, int]:
        any_nan, all_one = 0, full
        for v in it[off[k] : off[k + 1]].tolist():
            j = col_of[v]
            any_nan |= nan_bits[j]
            all_one &= one_bits[j]
        return any_nan, all_one

    counts = np.zeros((5, int(n_rules)), dtype=np.float64)
    for k in range(int(n_rules)):
        na, oa = bits(a_off, a_items, k)
        nc, oc = bits(c_off, c_items, k)
        counts[:, k] = ((na | nc).bit_count(), na.bit_count(), nc.bit_count(),
                        (nc & oa).bit_count(), (na & oc).bit_count())
    dis_ac, dis_a, dis_c, dis_int, dis_int_ = counts
    s_ac = values[:, METRICS.index("support")]
    s_a = values[:, METRICS.index("antecedent support")]
    s_c = values[:, METRICS.index("consequent support")]
    with np.errstate(divide="ignore", invalid="ignore"):
        conf = s_ac * (n - dis_ac) / (s_a * (n - dis_a) - dis_int)
        conf_ca = s_ac * (n - dis_ac) / (s_c * (n - dis_c) - dis_int_)
        leverage = s_ac - s_a * s_c
        zden = np.maximum(s_ac * (1 - s_a), s_a * (s_c - s_ac))
        conviction = np.full(conf.shape, np.inf)
        lt = conf < 1.0
        conviction[lt] = (1.0 - s_c[lt]) / (1.0 - conf[lt])
        cols = {
            "antecedent support": s_a,
            "consequent support": s_c,
            "support": s_ac,
            "confidence": conf,
            "lift": conf / s_c,
            "representativity": (n - dis_ac) / n,
            "leverage": leverage,
            "conviction": conviction,
            "zhangs_metric": np.where(zden == 0, 0, leverage / zden),
            "jaccard": s_ac / (s_a + s_c - s_ac),
            "certainty": np.where(1 - s_c == 0, 0, (conf - s_c) / (1 - s_c)),
            "kulczynski": (conf + conf_ca) / 2,
        }
    ok = np.flatnonzero(cols[metric] >= min_threshold)
    if output == "count":
        return len(ok)
    if max_rules is not None and len(ok) > max_rules:
        raise ValueError(
            f"the result would exceed max_rules={max_rules} rules ({len(ok)}); raise min_threshold "
            "or the itemsets' min_support, or raise max_rules"
        )
    new_values = np.stack([cols[m][ok] for m in METRICS], axis=1)

    def take(off: np.ndarray, it: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lengths = np.diff(off.astype(np.int64))[ok]
        starts = off[:-1].astype(np.int64)[ok]
        new_off = np.zeros(len(ok) + 1, dtype=np.uint64)
        np.cumsum(lengths, out=new_off[1:])
        idx = np.repeat(starts - new_off[:-1].astype(np.int64), lengths) + np.arange(int(new_off[-1]))
        return new_off, it[idx]

    a_off, a_items = take(a_off, a_items)
    c_off, c_items = take(c_off, c_items)
    return _rules_output(a_off, a_items, c_off, c_items, new_values, len(ok), vocab, return_metrics, output)


def association_rules(
    df: Any,
    num_itemsets: int | None = 1,
    df_orig: Any = None,
    null_values: bool = False,
    metric: str = "confidence",
    min_threshold: float = 0.8,
    support_only: bool = False,
    return_metrics: list[str] = METRICS,
    *,
    max_antecedent_len: int | None = None,
    max_consequent_len: int | None = None,
    max_rules: int | None = DEFAULT_MAX_RULES,
    output: Output = "pandas",
    n_jobs: int | None = None,
) -> Any:
    """Association rules from frequent itemsets, as mlxtend's ``association_rules``.

    Every itemset of size >= 2 is split into antecedent and consequent in all
    ways; a rule is kept when ``metric >= min_threshold``. All 12 metrics are
    computed in Rust with mlxtend's formulas (conviction inf at confidence 1,
    zhangs_metric 0 and certainty 0 where their denominators vanish).

    Parameters
    ----------
    df : DataFrame, pyarrow.Table or polars.DataFrame
        Columns ``support`` and ``itemsets`` (frozensets, or a list column),
        e.g. the output of :func:`fpgrowth` in any ``output`` format.
    num_itemsets : int
        Number of transactions (mlxtend's name); cancels out of every metric.
    df_orig, null_values
        mlxtend's missing-value mode: with ``null_values=True``, ``df_orig``
        (the one-hot frame the itemsets came from, with NaN) and
        ``num_itemsets`` (its number of rows) are required, and the metrics
        discount the rows with NaN as mlxtend does (see ``_rules_with_nan``).
    metric : str, default "confidence"
        One of the 12 metric names.
    min_threshold : float, default 0.8
    support_only : bool, default False
        Only the rule support (other metrics NaN); needs no sub-itemset supports.
    return_metrics : list of str
        Metric columns to return, in order.
    max_antecedent_len, max_consequent_len : int or None
        Only rules with at most this many items on that side.
    max_rules : int or None, default 50_000_000
        Refuse (ValueError) more rules than this, while generating them,
        before memory runs out. None: no limit. Ignored for ``output="count"``.
    output : {"pandas", "arrow", "polars", "count"}
    n_jobs : int or None
        Threads; the result does not depend on it.

    Returns
    -------
    DataFrame (``antecedents``, ``consequents`` frozensets, then the metric
    columns), pyarrow.Table, polars.DataFrame, or the number of rules.

    Raises
    ------
    KeyError
        If an antecedent or consequent has no support in ``df`` (e.g. fpmax
        output) and ``support_only`` is False, as mlxtend.
    """
    if null_values and df_orig is None:
        raise TypeError("If null values exist, df_orig must be provided.")
    if null_values and num_itemsets == 1:
        raise TypeError("If null values exist, num_itemsets must be provided.")
    _check_output(output)
    tx_orig = _intake(df_orig, True) if null_values else None
    if df.shape[0] == 0:
        raise ValueError("The input DataFrame `df` containing the frequent itemsets is empty.")
    if support_only:
        metric = "support"
    elif metric not in METRICS:
        raise ValueError("Metric must be 'confidence' or 'lift', got '{}'".format(metric))
    unknown = [m for m in return_metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) in return_metrics: {unknown}; choose from {METRICS}")
    for name, v in (("max_antecedent_len", max_antecedent_len), ("max_consequent_len", max_consequent_len)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1):
            raise ValueError(f"{name} must be None or an int >= 1, got {v!r}")
    _check_limit("max_rules", max_rules)
    offsets, items, supports, vocab = _itemset_column(df)
    n = float(num_itemsets if num_itemsets is not None else 1)
    if tx_orig is not None and tx_orig.nan is not None and not support_only:
        return _rules_with_nan(
            tx_orig, offsets, items, supports, vocab, n, metric, float(min_threshold), return_metrics,
            max_antecedent_len, max_consequent_len, max_rules, output, n_jobs,
        )
    a_off, a_items, c_off, c_items, values, n_rules = _core.fp_rules(
        offsets,
        items,
        supports,
        METRICS.index(metric),
        float(min_threshold),
        support_only=bool(support_only),
        max_antecedent_len=max_antecedent_len,
        max_consequent_len=max_consequent_len,
        num_itemsets=n,
        max_rules=None if output == "count" else max_rules,
        count_only=output == "count",
        n_threads=resolve_n_jobs(n_jobs),
    )
    if output == "count":
        return int(n_rules)
    return _rules_output(a_off, a_items, c_off, c_items, values, n_rules, vocab, return_metrics, output)


def _rules_output(
    a_off: np.ndarray,
    a_items: np.ndarray,
    c_off: np.ndarray,
    c_items: np.ndarray,
    values: np.ndarray,
    n_rules: int,
    vocab: list[Any],
    return_metrics: list[str],
    output: str,
) -> Any:
    cols = [METRICS.index(m) for m in return_metrics]
    if output == "pandas":
        import pandas as pd

        if n_rules == 0:
            return pd.DataFrame(columns=["antecedents", "consequents"] + list(return_metrics))
        res = pd.DataFrame(
            {
                "antecedents": _frozensets(a_off, a_items, vocab),
                "consequents": _frozensets(c_off, c_items, vocab),
            },
            copy=False,
        )
        for name, j in zip(return_metrics, cols):
            res[name] = values[:, j]
        return res
    import pyarrow as pa

    labels = pa.array(vocab) if vocab else pa.array([], pa.int64())

    def lists(off: np.ndarray, it: np.ndarray) -> Any:
        return pa.LargeListArray.from_arrays(pa.array(off.astype(np.int64)), labels.take(pa.array(it)))

    data: dict[str, Any] = {"antecedents": lists(a_off, a_items), "consequents": lists(c_off, c_items)}
    for name, j in zip(return_metrics, cols):
        data[name] = pa.array(np.ascontiguousarray(values[:, j]))
    table = pa.table(data)
    if output == "polars":
        import polars as pl

        return pl.from_arrow(table)
    return table


# --------------------------------------------------------------------------
# TransactionEncoder and the FPGrowth estimator
# --------------------------------------------------------------------------


class TransactionEncoder(TransformerMixin, BaseEstimator):
    """One-hot encoding of transactions, compatible with mlxtend's.

    ``fit`` learns ``columns_`` (the sorted distinct items) and
    ``columns_mapping_``; ``transform`` returns a bool array of shape
    (n_transactions, n_items), or a scipy CSR bool matrix with ``sparse=True``.
    An item not seen in ``fit`` raises KeyError, as mlxtend.
    """

    def fit(self, X: Iterable[Iterable[Hashable]], y: Any = None) -> TransactionEncoder:
        items = list(dict.fromkeys(itertools.chain.from_iterable(X)))
        self.columns_ = sorted(items)
        self.columns_mapping_ = {item: i for i, item in enumerate(self.columns_)}
        return self

    def transform(self, X: Iterable[Iterable[Hashable]], sparse: bool = False) -> Any:
        check_is_fitted(self, "columns_")
        import scipy.sparse as sp

        rows = [list(t) for t in X]
        mapping = self.columns_mapping_
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        col_lists = [sorted({mapping[item] for item in row}) for row in rows]
        np.cumsum([len(c) for c in col_lists], out=indptr[1:])
        indices = np.fromiter(itertools.chain.from_iterable(col_lists), dtype=np.int64, count=int(indptr[-1]))
        m = sp.csr_matrix(
            (np.ones(len(indices), dtype=bool), indices, indptr), shape=(len(rows), len(self.columns_))
        )
        return m if sparse else m.toarray()

    def fit_transform(self, X: Any, y: Any = None, sparse: bool = False) -> Any:  # type: ignore[override]
        rows = [list(t) for t in X]
        return self.fit(rows).transform(rows, sparse=sparse)

    def inverse_transform(self, array: Any) -> list[list[Any]]:
        check_is_fitted(self, "columns_")
        import scipy.sparse as sp

        m = sp.csr_matrix(array)
        cols = np.asarray(self.columns_, dtype=object)
        return [list(cols[m.indices[m.indptr[i] : m.indptr[i + 1]]]) for i in range(m.shape[0])]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "columns_")
        return np.asarray([str(c) for c in self.columns_], dtype=object)


class FPGrowth(TransformerMixin, BaseEstimator):
    """Frequent itemsets as an sklearn estimator, and itemset features.

    Parameters
    ----------
    min_support : float or int, default 0.5
        Fraction in (0, 1] or absolute count (int >= 1).
    max_len : int or None
    kind : {"all", "closed", "maximal"}, default "all"
    max_itemsets : int or None, default 50_000_000
    n_jobs : int or None

    Attributes
    ----------
    frequent_itemsets_ : DataFrame
        ``support`` and ``itemsets`` (frozensets of items).
    itemset_offsets_, itemset_items_ : ndarray
        The itemsets as a list column of item ids (into ``items_``).
    items_ : ndarray of object
        The item of every id.
    n_transactions_ : int

    ``transform(X)`` returns a scipy CSR matrix (n_transactions, n_itemsets)
    with a 1 where a transaction contains the itemset.
    """

    def __init__(
        self,
        min_support: float | int = 0.5,
        max_len: int | None = None,
        kind: Literal["all", "closed", "maximal"] = "all",
        max_itemsets: int | None = DEFAULT_MAX_ITEMSETS,
        n_jobs: int | None = None,
    ) -> None:
        self.min_support = min_support
        self.max_len = max_len
        self.kind = kind
        self.max_itemsets = max_itemsets
        self.n_jobs = n_jobs

    def fit(self, X: Any, y: Any = None) -> FPGrowth:
        if self.kind not in ("all", "closed", "maximal"):
            raise ValueError(f"kind must be 'all', 'closed' or 'maximal', got {self.kind!r}")
        tx = _intake(X)
        if tx.n == 0:
            raise ValueError("Found array with 0 transactions; FPGrowth needs at least one.")
        min_count = _min_count(self.min_support, tx.n)
        offsets, items, counts, _ = _core.fp_mine(
            tx.indptr,
            tx.indices,
            tx.n_items,
            min_count,
            kind=self.kind,
            max_len=_check_max_len(self.max_len),
            max_itemsets=self.max_itemsets,
            n_threads=resolve_n_jobs(self.n_jobs),
        )
        labels = tx.labels if tx.labels is not None else list(range(tx.n_items))
        self.items_ = np.asarray(labels + [None], dtype=object)[:-1]
        self.itemset_offsets_ = offsets
        self.itemset_items_ = items
        self.n_transactions_ = tx.n
        support = counts.astype(np.float64) / float(tx.n)
        self.frequent_itemsets_ = _itemset_frame(offsets, items, support, labels, True, "pandas")
        self.n_features_in_ = tx.n_items
        return self

    def transform(self, X: Any) -> Any:
        check_is_fitted(self, "itemset_offsets_")
        import scipy.sparse as sp

        tx = _intake(X)
        # Map the transactions' item ids onto the fitted ones.
        if tx.labels is not None:
            pos = {item: i for i, item in enumerate(self.items_.tolist())}
            remap = np.array([pos.get(x, -1) for x in tx.labels], dtype=np.int64)
        else:
            remap = np.arange(tx.n_items, dtype=np.int64)
            remap[remap >= len(self.items_)] = -1
        rows = np.repeat(np.arange(tx.n), np.diff(tx.indptr))
        cols = remap[tx.indices] if len(tx.indices) else np.zeros(0, np.int64)
        ok = cols >= 0
        onehot = sp.csr_matrix(
            (np.ones(int(ok.sum()), dtype=np.int32), (rows[ok], cols[ok])), shape=(tx.n, len(self.items_))
        )
        onehot.data[:] = 1
        offsets = self.itemset_offsets_.astype(np.int64)
        lengths = np.diff(offsets)
        member = sp.csr_matrix(
            (np.ones(len(self.itemset_items_), dtype=np.int32), self.itemset_items_.astype(np.int64), offsets),
            shape=(len(lengths), len(self.items_)),
        )
        hits = (onehot @ member.T).tocsr()
        hits.data = (hits.data == lengths[hits.indices]).astype(np.int8)
        hits.eliminate_zeros()
        return hits

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "itemset_offsets_")
        names = []
        for k in range(len(self.itemset_offsets_) - 1):
            ids = self.itemset_items_[self.itemset_offsets_[k] : self.itemset_offsets_[k + 1]]
            names.append("itemset_" + "_".join(str(self.items_[i]) for i in ids))
        return np.asarray(names, dtype=object)
