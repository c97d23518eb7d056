"""Data intake shared by every kernel.

Whatever the caller hands over (NumPy, pandas, pyarrow, polars, lists), this
module turns it into :class:`Features`: the numeric features as views the Rust
kernels read without copying, and the categorical features as integer codes
plus their category values.

What is copied, and when:

* NumPy float32/float64 arrays: never (any strides, read-only memmaps too).
* pandas float32/float64 columns: never (each column is a view of its block).
* pyarrow/polars float32/float64 columns without nulls: never (NumPy views
  over the Arrow buffers, through the Arrow PyCapsule interface).
* Integer columns, nullable columns and Arrow columns with nulls: converted
  once to float64 (nulls become NaN).
* Strings, categories and booleans: converted once to integer codes.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _core

__all__ = ["Features", "Categorical", "read_features"]

_FLOATS = (np.dtype(np.float64), np.dtype(np.float32))


@dataclass
class Categorical:
    """One categorical feature: codes into ``categories``, -1 for missing."""

    codes: np.ndarray
    categories: list


@dataclass
class Features:
    """Features of one data set, as the kernels take them."""

    n_rows: int
    #: Column labels when the input had them (strings only, as scikit-learn).
    names: list[str] | None
    #: "numeric" or "categorical" per feature.
    kinds: list[str]
    #: Positions of the numeric features, in order.
    numeric_index: list[int] = field(default_factory=list)
    #: A 2-D float array (the numeric features as its columns) or, per numeric
    #: feature, a list of 1-D float chunks; all of one dtype. None if none.
    numeric: Any = None
    categorical: dict[int, Categorical] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return len(self.kinds)

    def label(self, j: int) -> str:
        """How messages name feature ``j``."""
        return repr(self.names[j]) if self.names is not None else f"{j} (column index)"


def check_sample_weight(sample_weight, n_samples: int) -> np.ndarray | None:
    """scikit-learn's ``_check_sample_weight`` as every estimator here needs it.

    ``None`` stays ``None``; a real scalar is that weight for every row;
    otherwise 1-D float64 of length ``n_samples``. The weights must be finite,
    >= 0 and not all zero (ValueError saying which rule failed).
    """
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Real) and not isinstance(sample_weight, (bool, np.bool_)):
        sw = np.full(n_samples, float(sample_weight))
    else:
        try:
            sw = np.asarray(sample_weight, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"sample_weight must be an array of numbers: {exc}") from exc
        if sw.ndim != 1:
            raise ValueError(
                f"Sample weights must be 1D array or scalar, got {sw.ndim}D array. "
                f"Expected either a scalar value or a 1D array of length {n_samples}."
            )
        if sw.shape != (n_samples,):
            raise ValueError(f"sample_weight.shape == {sw.shape}, expected {(n_samples,)}!")
    if not np.all(np.isfinite(sw)):
        raise ValueError("Input sample_weight contains NaN or infinity; pass finite weights.")
    if np.any(sw < 0):
        raise ValueError("Negative values in data passed to sample_weight: every weight must be >= 0, found a negative one.")
    if np.all(sw == 0):
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return np.ascontiguousarray(sw)


def _is_pandas(X) -> bool:
    return type(X).__module__.split(".")[0] == "pandas"


def _has_arrow(X) -> bool:
    return hasattr(X, "__arrow_c_stream__") or hasattr(X, "__arrow_c_array__")


def _kind_of(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (numbers.Number, np.number)):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, bytes):
        return "bytes"
    return type(value).__name__


def _is_missing(value) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, pd.NA raises -> not missing by this test
    except (TypeError, ValueError):
        return False


def _sorted_if_possible(categories: list) -> list:
    try:
        return sorted(categories)
    except TypeError:
        return categories


def _factorize(values: np.ndarray, label: str) -> Categorical:
    """Codes for a 1-D array of hashable values; None/NaN/NA are missing."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a test dependency
        pd = None
    if pd is not None:
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        categories = list(uniques)
    else:  # pragma: no cover
        index: dict = {}
        codes = np.empty(len(values), dtype=np.int64)
        for i, v in enumerate(values.tolist()):
            codes[i] = -1 if _is_missing(v) else index.setdefault(v, len(index))
        categories = list(index)
    kinds = {_kind_of(c) for c in categories}
    if len(kinds) > 1:
        raise ValueError(
            f"column {label} mixes value types ({', '.join(sorted(kinds))}); "
            "convert it to a single type (for example with .astype(str)) first"
        )
    return _sorted_categories(np.asarray(codes), categories)


def _sorted_categories(codes: np.ndarray, categories: list) -> Categorical:
    """Put categories in sorted order (when they sort) and renumber the codes."""
    ordered = _sorted_if_possible(list(categories))
    if ordered != list(categories):
        position = {c: i for i, c in enumerate(ordered)}
        lut = np.array([position[c] for c in categories] + [-1], dtype=np.int64)
        codes = lut[codes]  # code -1 picks the trailing -1
    return Categorical(codes=np.asarray(codes), categories=ordered)


def _check_2d(ndim: int, allow_1d: bool) -> None:
    if ndim == 2 or (ndim == 1 and allow_1d):
        return
    if ndim == 1:
        raise ValueError(
            "Expected a 2-D array, got a 1-D array instead: reshape your data with "
            "X.reshape(-1, 1) if it has a single feature, or X.reshape(1, -1) if it is one sample"
        )
    raise ValueError(f"Expected a 2-D array, got an array with {ndim} dimensions")


def _from_numpy(a: np.ndarray, forced: set[int], allow_1d: bool) -> Features:
    _check_2d(a.ndim, allow_1d)
    if a.ndim == 1:
        a = a[:, None]
    n, d = a.shape
    kind = a.dtype.kind
    if kind in "iu":
        a = a.astype(np.float64)  # documented: integers are converted once
        kind = "f"
    elif kind == "f" and a.dtype not in _FLOATS:
        a = a.astype(np.float64)
    if kind == "f":
        numeric_index = [j for j in range(d) if j not in forced]
        feats = Features(n_rows=n, names=None, kinds=["numeric"] * d, numeric_index=numeric_index)
        if numeric_index:
            feats.numeric = a if not forced else [[a[:, j]] for j in numeric_index]
        for j in forced:
            feats.kinds[j] = "categorical"
            feats.categorical[j] = _factorize(a[:, j], f"{j} (column index)")
        return feats
    if kind == "b":
        cats = {j: Categorical(a[:, j].astype(np.int8), [False, True]) for j in range(d)}
        return Features(n_rows=n, names=None, kinds=["categorical"] * d, categorical=cats)
    if kind in "OUS":
        cats = {j: _factorize(a[:, j], f"{j} (column index)") for j in range(d)}
        return Features(n_rows=n, names=None, kinds=["categorical"] * d, categorical=cats)
    if kind == "c":
        raise ValueError("Complex data not supported: pass real numbers, strings, booleans or categories")
    raise TypeError(
        f"cannot read an array of dtype {a.dtype}; pass numbers, strings, booleans or categories"
    )


def _pandas_column(s, label: str):
    """('numeric', 1-D float array) or ('categorical', Categorical) for a Series."""
    import pandas as pd

    dtype = s.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        codes = np.asarray(s.cat.codes.to_numpy(), dtype=np.int64)
        return "categorical", _sorted_categories(codes, list(dtype.categories))
    if pd.api.types.is_bool_dtype(dtype):
        if isinstance(dtype, np.dtype):
            return "categorical", Categorical(s.to_numpy().astype(np.int8), [False, True])
        return "categorical", _factorize(s.to_numpy(dtype=object), label)
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        if isinstance(dtype, np.dtype) and dtype in _FLOATS:
            return "numeric", s.to_numpy()  # a view of the frame's block
        return "numeric", s.to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_string_dtype(dtype) or dtype == object:
        return "categorical", _factorize(s.to_numpy(dtype=object), label)
    raise TypeError(
        f"column {label} has dtype {dtype}, which ferromine cannot read; "
        "convert it to numbers, strings, booleans or a category first"
    )


def _from_pandas(X, forced: set, allow_1d: bool) -> Features:
    import pandas as pd

    if isinstance(X, pd.Series):
        _check_2d(1, allow_1d)
        X = X.to_frame()
    labels = list(X.columns)
    names = [str(c) for c in labels] if all(isinstance(c, str) for c in labels) else None
    feats = Features(n_rows=len(X), names=names, kinds=[])
    numeric = []
    for j, label in enumerate(labels):
        s = X.iloc[:, j]
        shown = repr(label)
        kind, payload = _pandas_column(s, shown)
        if kind == "numeric" and (j in forced or label in forced):
            kind, payload = "categorical", _factorize(payload, shown)
        feats.kinds.append(kind)
        if kind == "numeric":
            feats.numeric_index.append(j)
            numeric.append([payload])
        else:
            feats.categorical[j] = payload
    feats.numeric = _unify_chunks(numeric)
    return feats


def _from_arrow(X, forced: set, allow_1d: bool) -> Features:
    # Tables (pyarrow Table/RecordBatch/reader, polars DataFrame) have a schema
    # or columns; single columns (Array, ChunkedArray, polars Series) do not.
    if not (hasattr(X, "schema") or hasattr(X, "columns")):
        _check_2d(1, allow_1d)
    columns = _core.arrow_columns(X)
    feats = Features(n_rows=0, names=[name for name, _, _ in columns], kinds=[])
    numeric = []
    for j, (name, kind, payload) in enumerate(columns):
        if kind in ("float", "float-converted"):
            feats.n_rows = sum(len(c) for c in payload)
            if j in forced or name in forced:
                values = np.concatenate(payload) if payload else np.empty(0)
                feats.kinds.append("categorical")
                feats.categorical[j] = _factorize(values, repr(name))
            else:
                feats.kinds.append("numeric")
                feats.numeric_index.append(j)
                numeric.append(list(payload))
        else:
            codes, categories = payload
            feats.n_rows = len(codes)
            feats.kinds.append("categorical")
            feats.categorical[j] = _sorted_categories(np.asarray(codes, dtype=np.int64), list(categories))
    feats.numeric = _unify_chunks(numeric)
    return feats


def _unify_chunks(columns: list[list[np.ndarray]]):
    """One float dtype for all numeric chunks (float32 only if all are)."""
    if not columns:
        return None
    dtypes = {c.dtype for chunks in columns for c in chunks}
    if dtypes <= {np.dtype(np.float32)} and dtypes:
        return columns
    return [
        [c if c.dtype == np.float64 else c.astype(np.float64) for c in chunks] for chunks in columns
    ]


def read_features(X, *, categorical=None, allow_1d: bool = False) -> Features:
    """Read ``X`` into :class:`Features` (see the module docstring).

    Parameters
    ----------
    X : array-like, pandas DataFrame/Series, pyarrow Table/RecordBatch/Array/
        ChunkedArray, polars DataFrame/Series, or anything with the Arrow
        PyCapsule interface.
    categorical : iterable of int or str, optional
        Features to treat as categorical even though they are numeric.
    allow_1d : bool
        Read a 1-D input as one feature instead of raising.
    """
    forced = set(categorical) if categorical is not None else set()
    if isinstance(X, np.ndarray):
        forced_idx = {j for j in forced if isinstance(j, numbers.Integral)}
        return _from_numpy(X, forced_idx, allow_1d)
    if _is_pandas(X):
        return _from_pandas(X, forced, allow_1d)
    if _has_arrow(X):
        return _from_arrow(X, forced, allow_1d)
    if hasattr(X, "toarray") or hasattr(X, "tocsr"):
        raise TypeError("sparse matrices are not supported here; pass a dense array or a DataFrame")
    try:
        a = np.asarray(X)
    except Exception as exc:  # noqa: BLE001 - report what could not be read
        raise TypeError(f"cannot read input of type {type(X).__name__} as a table: {exc}") from exc
    forced_idx = {j for j in forced if isinstance(j, numbers.Integral)}
    return _from_numpy(a, forced_idx, allow_1d)
