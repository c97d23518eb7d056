"""Partitions of dask collections and the exact distributed quantile.

Everything here runs the single-machine kernels on each partition and merges
small partial states on the client; the scheduling is dask's.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np


def is_dask(obj: Any) -> bool:
    """True for a dask collection (array, DataFrame, Series, bag, delayed)."""
    return hasattr(obj, "__dask_graph__") and callable(getattr(obj, "__dask_graph__"))


def partitions(X: Any) -> list:
    """The row partitions of a dask collection as a list of delayed objects.

    A 2-D dask array chunked along its columns is rechunked to whole rows
    first (the kernels read whole rows). A NumPy array or pandas frame is one
    partition.
    """
    import dask
    import dask.array as da

    if isinstance(X, da.Array):
        if X.ndim == 2 and len(X.chunks[1]) > 1:
            X = X.rechunk({1: -1})
        return list(np.asarray(X.to_delayed()).ravel())
    if hasattr(X, "to_delayed") and is_dask(X):
        return list(X.to_delayed())
    if is_dask(X):
        raise TypeError(f"cannot split a {type(X).__name__} into partitions; pass a dask array, DataFrame or bag")
    return [dask.delayed(X)]


def compute(tasks: list) -> list:
    """Compute delayed tasks together (on the active distributed client if any)."""
    import dask

    if not tasks:
        return []
    return list(dask.compute(*tasks))


def share(obj: Any) -> Any:
    """``obj`` as one shared graph input for many tasks: scattered to every
    worker when a distributed client is active (so the client sends it once
    per worker, not once per task), else a single delayed value."""
    import dask

    try:
        from distributed import get_client

        client = get_client()
    except (ImportError, ValueError):
        return dask.delayed(obj)
    # A list scatters element by element: wrap so tuples and dicts stay whole.
    return client.scatter([obj], broadcast=True, hash=False)[0]


def delayed(fn: Callable) -> Callable:
    import dask

    return dask.delayed(fn, pure=True)


# ---------------------------------------------------------------------------
# Exact order statistics from a mergeable sketch plus one bracketed pass.

#: Probabilities of the per-partition sketch: local quantiles on this grid
#: with, for each, the exact count of local values <= it.
SKETCH_SIZE = 1025


def sketch_grid(size: int = SKETCH_SIZE) -> np.ndarray:
    return np.linspace(0.0, 1.0, size)


def sketch(values: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The mergeable sketch of one partition's values (NaN ignored): the order
    statistics at ranks ``round(g * (n - 1))`` for ``g`` in ``grid`` and, for
    each, the exact count of values ``<=`` it. One sort, ``O(n log n)``
    (counting each of ``G`` quantiles separately would be ``O(n G)``)."""
    v = np.sort(values[~np.isnan(values)])
    if v.size == 0:
        return np.zeros(0), np.zeros(0, np.int64), 0
    q = v[np.round(grid * (v.size - 1)).astype(np.int64)]
    return q, np.searchsorted(v, q, side="right").astype(np.int64), int(v.size)


class RankBounds:
    """Bounds of the global count ``C(t) = #{x <= t}`` from per-partition
    sketches ``(q, n_le, n_valid)``: ``L(t) <= C(t) <= U(t)`` at every
    candidate ``t`` (every sketch value of every partition)."""

    def __init__(self, sketches: list[tuple[np.ndarray, np.ndarray, int]]):
        parts = []
        for q, n_le, n in sketches:
            if n == 0:
                continue
            keep = ~np.isnan(q)  # lerp across an infinity can give NaN: not a candidate
            parts.append((q[keep], n_le[keep].astype(np.int64), int(n)))
        self.n = sum(n for _, _, n in parts)
        cand = np.unique(np.concatenate([q for q, _, _ in parts])) if parts else np.zeros(0)
        lower = np.zeros(cand.size, dtype=np.int64)
        upper = np.zeros(cand.size, dtype=np.int64)
        for q, n_le, n in parts:
            # Largest sketch value <= t: at least its count is <= t.
            j = np.searchsorted(q, cand, side="right") - 1
            lower += np.where(j >= 0, n_le[np.maximum(j, 0)], 0)
            # Smallest sketch value >= t: at most its count is <= t.
            j = np.searchsorted(q, cand, side="left")
            upper += np.where(j < q.size, n_le[np.minimum(j, q.size - 1)], n)
        self.candidates, self.lower, self.upper = cand, lower, upper

    def bracket(self, r: int) -> tuple[float | None, float]:
        """``(a, b)`` with ``a < x_(r) <= b`` for the 0-based rank ``r``
        (``a`` None: no lower bound)."""
        ok_a = np.flatnonzero(self.upper <= r)
        a = float(self.candidates[ok_a[-1]]) if ok_a.size else None
        ok_b = np.flatnonzero(self.lower >= r + 1)
        b = float(self.candidates[ok_b[0]])  # the overall maximum always qualifies
        return a, b

    def approximate(self, r: float) -> tuple[float, int]:
        """A candidate whose global rank is closest to ``r`` (by the midpoint
        of its bounds), and the width of its rank interval (the error bound)."""
        mid = (self.lower + self.upper) / 2.0
        i = int(np.argmin(np.abs(mid - (r + 1))))
        return float(self.candidates[i]), int(self.upper[i] - self.lower[i])


def bracket_pass(values: np.ndarray, brackets: list[tuple[float | None, float]]):
    """For each bracket ``(a, b)``: ``#{x <= a}``, the values in ``(a, b)``
    and ``#{x == b}``, over the non-NaN ``values`` of one partition."""
    v = values[~np.isnan(values)]
    out = []
    for a, b in brackets:
        below = v <= a if a is not None else np.zeros(v.size, dtype=bool)
        n_le = int(np.count_nonzero(below))
        inside = v[~below & (v < b)]
        out.append((n_le, inside, int(np.count_nonzero(v == b))))
    return out


def resolve_brackets(brackets, parts_results) -> np.ndarray:
    """The exact order statistics from :func:`bracket_pass` results of every
    partition (``parts_results[p][i]`` for bracket ``i``)."""
    out = np.empty(len(brackets))
    for i, (rank, (_, b)) in enumerate(brackets.items()):
        base = sum(res[i][0] for res in parts_results)
        inside = np.sort(np.concatenate([res[i][1] for res in parts_results] + [np.zeros(0)]))
        k = rank - base
        out[i] = inside[k] if k < inside.size else b
    return out


def lerp_rust(a: float, b: float, t: float) -> float:
    """``ferromine_core::psi::lerp``: numpy's linear interpolation, except
    that equal neighbours or a zero weight give the lower value exactly."""
    if a == b or t == 0.0:
        return a
    diff = b - a
    return b - diff * (1.0 - t) if t >= 0.5 else a + diff * t


def ranks_rust(n: int, p: float) -> tuple[int, int, float]:
    """The ranks quantile ``p`` of ``n`` values interpolates between and the
    weight of the upper one, as ``ferromine_core::psi`` computes them."""
    last = n - 1
    virt = float(last) * p
    if virt >= float(last):
        return last, last, 0.0
    if virt <= 0.0:
        return 0, 0, 0.0
    prev = math.floor(virt)
    return prev, prev + 1, virt - prev


def ranks_numpy(n: int, q: float) -> tuple[int, int, float]:
    """``numpy.quantile(..., method="linear")``'s ranks and weight: virtual
    index ``(n - 1) * q``, clipped to the last value."""
    virt = float(np.float64(n - 1) * np.float64(q))
    if virt >= n - 1:
        return n - 1, n - 1, 0.0
    prev = math.floor(virt)
    return prev, prev + 1, virt - prev


def lerp_numpy(a: float, b: float, t: float) -> float:
    """``numpy``'s ``_lerp`` on scalars."""
    a, b, t = np.float64(a), np.float64(b), np.float64(t)
    diff = b - a
    if t >= 0.5:
        return float(b - diff * (np.float64(1.0) - t))
    return float(a + diff * t)
