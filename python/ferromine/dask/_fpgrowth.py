"""Frequent itemsets on dask collections: two passes in the SON style.

Pass 1 mines every partition at its share of the global threshold; an itemset
frequent overall is frequent in at least one partition at that share, so the
union of the local results holds every answer. Pass 2 counts the union on
every partition; the sums are exact supports.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from .. import _core
from .. import fpgrowth as _fp
from .._threads import resolve_n_jobs
from . import _common as C


def _kind_of_input(data: Any) -> str:
    """'lists' (bag, Series or one list column) or 'onehot' (bool frame/array)."""
    import dask.array as da

    if isinstance(data, da.Array):
        return "onehot"
    meta = getattr(data, "_meta", None)
    if meta is None:
        return "lists"  # a bag
    if not hasattr(meta, "columns"):
        return "lists"  # a Series of lists
    import pandas as pd

    # One-hot columns are bool or 0/1 numbers; a single column of anything
    # else holds lists (dask may show an object column as a string dtype).
    dtype = meta.dtypes.iloc[0] if len(meta.columns) == 1 else None
    if dtype is not None and not (pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype)):
        return "lists"
    return "onehot"


def _rows(part) -> list:
    """The transactions of one list partition as a list of lists."""
    if hasattr(part, "columns"):
        part = part.iloc[:, 0]
    if hasattr(part, "tolist"):
        part = part.tolist()
    out = []
    for t in part:
        if isinstance(t, (str, bytes)):
            raise TypeError(
                "expected one list of items per transaction, got a string; dask turns an object column "
                "of lists into strings: use an Arrow list dtype (pd.ArrowDtype(pa.list_(...))) or a bag"
            )
        out.append([] if t is None else (t if hasattr(t, "__len__") else list(t)))
    return out


def _vocab(part) -> tuple[int, list]:
    rows = _rows(part)
    return len(rows), list(dict.fromkeys(itertools.chain.from_iterable(rows)))


def _csr(part, kind, index, null_values):
    """(indptr, indices, n) of one partition over the global item ids."""
    if kind == "lists":
        rows = _rows(part)
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        flat = list(itertools.chain.from_iterable(rows))
        indices = np.fromiter(map(index.__getitem__, flat), dtype=np.int64, count=len(flat))
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        return indptr, indices, len(rows)
    tx = _fp._intake(part, null_values)
    return tx.indptr, tx.indices, tx.n


def _local(part, kind, index, n_items, null_values, n_total, min_count, max_len, max_itemsets, n_jobs):
    """Pass 1: the partition's itemsets at its proportional threshold, as
    ``(offsets, items)`` (items ascending within each itemset)."""
    indptr, indices, n = _csr(part, kind, index, null_values)
    if n == 0:
        return np.zeros(1, np.uint64), np.zeros(0, np.uint32)
    # ceil(min_count * n_p / n): these sum to less than min_count + P, so an
    # itemset below every local threshold is below the global one.
    local = max(1, -(-min_count * n // n_total))
    offsets, items, _, _ = _core.fp_mine(indptr, indices, n_items, local, "all", max_len, max_itemsets, False, resolve_n_jobs(n_jobs))
    return offsets, items


def _count(part, kind, index, n_items, null_values, cand, n_jobs):
    """Pass 2: the support count of every candidate in one partition."""
    offsets, items = cand
    indptr, indices, n = _csr(part, kind, index, null_values)
    if n == 0:
        return np.zeros(len(offsets) - 1, np.uint64)
    # Arrays that arrive from another process may sit misaligned in the message buffer.
    offsets, items = np.require(offsets, requirements="CA"), np.require(items, requirements="CA")
    return _core.fp_count_itemsets(indptr, indices, n_items, offsets, items, resolve_n_jobs(n_jobs))


def _pack(itemsets: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(itemsets) + 1, dtype=np.uint64)
    np.cumsum([len(s) for s in itemsets], out=offsets[1:])
    items = np.fromiter(itertools.chain.from_iterable(itemsets), dtype=np.uint32, count=int(offsets[-1]))
    return offsets, items


def _unpack(offsets: np.ndarray, items: np.ndarray) -> list[tuple]:
    bounds = offsets.astype(np.int64)
    flat = items.tolist()
    return [tuple(flat[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def _keep_closed(counts: dict) -> dict:
    """Closed itemsets: no immediate superset with the same count (one with
    the same count exists whenever any superset has it)."""
    dead = set()
    for s, c in counts.items():
        if len(s) > 1:
            for sub in itertools.combinations(s, len(s) - 1):
                if counts.get(sub) == c:
                    dead.add(sub)
    return {s: c for s, c in counts.items() if s not in dead}


def _keep_maximal(counts: dict) -> dict:
    """Maximal itemsets: no frequent immediate superset."""
    dead = set()
    for s in counts:
        if len(s) > 1:
            dead.update(itertools.combinations(s, len(s) - 1))
    return {s: c for s, c in counts.items() if s not in dead}


def _mine(data, kind, min_support, null_values, use_colnames, max_len, output, max_itemsets, n_jobs):
    _fp._check_output(output)
    max_len = _fp._check_max_len(max_len)
    _fp._check_limit("max_itemsets", max_itemsets)
    parts = C.partitions(data)
    form = _kind_of_input(data)
    if form == "lists":
        vocab_parts = C.compute([C.delayed(_vocab)(p) for p in parts])
        n = sum(v[0] for v in vocab_parts)
        labels = _fp._sorted_vocabulary(itertools.chain.from_iterable(v[1] for v in vocab_parts))
    else:
        meta = getattr(data, "_meta", None)
        if meta is not None and hasattr(meta, "columns"):
            labels = list(meta.columns)
        else:
            labels = None
        n = int(sum(C.compute([C.delayed(len)(p) for p in parts])))
    n_items = len(labels) if labels is not None else int(data.shape[1])
    index = C.share({item: i for i, item in enumerate(labels)}) if form == "lists" else None
    if n == 0:
        _fp._min_count(min_support, 1)  # still validate the parameter
        found: dict = {}
    else:
        min_count = _fp._min_count(min_support, n)
        local_len = max_len if kind == "all" else None  # closed/maximal filter by length at the end
        local = C.compute(
            [
                C.delayed(_local)(p, form, index, n_items, null_values, n, min_count, local_len, max_itemsets, n_jobs)
                for p in parts
            ]
        )
        # No sort needed: the counting kernel orders candidates itself.
        union = list(set(itertools.chain.from_iterable(_unpack(o, i) for o, i in local)))
        offsets, items = _pack(union)
        cand = C.share((offsets, items))
        counts = C.compute([C.delayed(_count)(p, form, index, n_items, null_values, cand, n_jobs) for p in parts])
        total = np.sum(counts, axis=0, dtype=np.uint64) if counts else np.zeros(len(union), np.uint64)
        found = {s: int(c) for s, c in zip(union, total) if c >= min_count}
        if kind == "closed":
            found = _keep_closed(found)
        elif kind == "maximal":
            found = _keep_maximal(found)
        if max_len is not None:
            found = {s: c for s, c in found.items() if len(s) <= max_len}
    if output != "count" and max_itemsets is not None and len(found) > max_itemsets:
        raise ValueError(
            f"more than max_itemsets={max_itemsets} itemsets; raise min_support, set max_len, "
            "use fpclosed/fpmax, or pass max_itemsets=None"
        )
    if output == "count":
        return len(found)
    sets = sorted(found, key=lambda s: (len(s), s))
    offsets, items = _pack(sets)
    support = np.asarray([found[s] for s in sets], dtype=np.float64) / float(max(n, 1))
    return _fp._itemset_frame(offsets, items, support, labels if form == "lists" or labels else None, use_colnames, output)


_DOC = """
    Same parameters and result as the single-machine function (the rows may
    come in another order: by itemset length, then item ids). ``df`` is a dask
    bag of transactions (iterables of items), a dask Series or one-column
    DataFrame of lists, or a one-hot dask DataFrame or array. Two passes over
    the partitions (SON): local mining at the proportional threshold, then a
    global count of the union of the local itemsets; supports are exact.
    ``fpclosed`` and ``fpmax`` mine all frequent itemsets this way and keep the
    closed / maximal ones on the client (``max_len`` applies at the end, as on
    one machine)."""


def fpgrowth(df, min_support=0.5, null_values=False, use_colnames=False, max_len=None, verbose=0,
             output="pandas", max_itemsets=_fp.DEFAULT_MAX_ITEMSETS, n_jobs=None):
    """Frequent itemsets of a dask collection (see :func:`ferromine.frequent_patterns.fpgrowth`).
    """
    return _mine(df, "all", min_support, null_values, use_colnames, max_len, output,
                 None if output == "count" else max_itemsets, n_jobs)


def fpmax(df, min_support=0.5, null_values=False, use_colnames=False, max_len=None, verbose=0,
          output="pandas", max_itemsets=_fp.DEFAULT_MAX_ITEMSETS, n_jobs=None):
    """Maximal frequent itemsets of a dask collection (see :func:`ferromine.frequent_patterns.fpmax`).
    """
    return _mine(df, "maximal", min_support, null_values, use_colnames, max_len, output, max_itemsets, n_jobs)


def fpclosed(df, min_support=0.5, null_values=False, use_colnames=False, max_len=None, verbose=0,
             output="pandas", max_itemsets=_fp.DEFAULT_MAX_ITEMSETS, n_jobs=None):
    """Closed frequent itemsets of a dask collection (see :func:`ferromine.frequent_patterns.fpclosed`).
    """
    return _mine(df, "closed", min_support, null_values, use_colnames, max_len, output, max_itemsets, n_jobs)


for _f in (fpgrowth, fpmax, fpclosed):
    _f.__doc__ = (_f.__doc__ or "").rstrip() + "\n" + _DOC


def association_rules(df, num_itemsets, *args, **kwargs):
    """:func:`ferromine.frequent_patterns.association_rules` of frequent itemsets
    (the small result of :func:`fpgrowth`; a dask DataFrame is computed first).
    ``num_itemsets`` is the number of transactions."""
    if C.is_dask(df):
        df = df.compute()
    return _fp.association_rules(df, num_itemsets, *args, **kwargs)
