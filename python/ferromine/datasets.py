"""Synthetic data sets for tests and benchmarks at any scale.

:func:`make_transactions` writes market-basket transactions in the spirit of
the IBM Quest generator that made T10I4D100K (Agrawal and Srikant, 1994). The
generator runs in Rust (:mod:`ferromine._core`), in parallel, and gives the
same transactions for a ``random_state`` whatever ``n_jobs``.
"""

from __future__ import annotations

import numbers
from typing import Any, Literal

import numpy as np
from sklearn.utils import check_random_state

from . import _core
from ._threads import resolve_n_jobs

__all__ = ["make_transactions"]

TransactionsOutput = Literal["auto", "arrow", "csr", "lists"]


def _int_param(name: str, value: Any, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value}")
    return int(value)


def _real_param(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not (low <= v <= high):
        raise ValueError(f"{name} must be in [{low:g}, {high:g}], got {value}")
    return v


def make_transactions(
    n_transactions: int = 100_000,
    n_items: int = 1000,
    avg_len: float = 10.0,
    n_patterns: int = 2000,
    avg_pattern_len: float = 4.0,
    random_state: int | np.random.RandomState | None = None,
    *,
    correlation: float = 0.5,
    corruption: float = 0.5,
    output: TransactionsOutput = "auto",
    return_patterns: bool = False,
    n_jobs: int | None = None,
) -> Any:
    """Generate market-basket transactions with planted frequent itemsets.

    In the spirit of the IBM Quest generator (Agrawal and Srikant, "Fast
    algorithms for mining association rules", VLDB 1994, section 2.4.3); the
    defaults with ``n_transactions=100_000`` are the "T10I4D100K" setting.

    1. ``n_patterns`` potentially frequent itemsets ("patterns") are drawn.
       Their lengths are ``1 + Poisson(avg_pattern_len - 1)``. Each takes a
       fraction ``min(1, Exp(mean=correlation))`` of its items from the
       previous pattern (so patterns share items) and the rest uniformly from
       the ``n_items`` items. Each pattern gets a weight ``Exp(1)``
       (normalised to sum to 1: its probability of being picked) and a
       corruption level ``Normal(corruption, variance 0.1)`` clipped to
       [0, 1] (exactly 0 for every pattern when ``corruption=0``).
    2. Each transaction gets a target length ``1 + Poisson(avg_len - 1)``
       (at most ``n_items``) and is filled with patterns picked by weight.
       Before a pattern is added, items are dropped from it at random while a
       uniform draw is below its corruption level. A pattern that does not
       fit is added anyway half the time and otherwise carried over to the
       next transaction. Items are distinct and ascending within a
       transaction; the mean length is close to ``avg_len``. A transaction
       stops short when 32 picks in a row add no new item (its target is
       then out of the patterns' reach, e.g. ``avg_len`` near ``n_items``).

    Transactions are made in fixed chunks of 4096, each with its own random
    stream, and a pattern is carried over only within a chunk: the result is
    the same for a given ``random_state`` with any ``n_jobs``, and a shorter
    run is a prefix of a longer one with the same parameters.

    Parameters
    ----------
    n_transactions : int, default 100_000
        Number of transactions (>= 1).
    n_items : int, default 1000
        Items are the integers ``0 .. n_items - 1``.
    avg_len : float, default 10.0
        Mean transaction length, in [1, n_items].
    n_patterns : int, default 2000
        Number of planted patterns (>= 1).
    avg_pattern_len : float, default 4.0
        Mean pattern length, in [1, n_items].
    random_state : int, RandomState instance or None, default None
        Seed (sklearn convention); two 31-bit draws from it seed the
        generator. ``None`` gives different data on each call.
    correlation : float, default 0.5
        Mean share of a pattern's items taken from the previous one, in [0, 1].
    corruption : float, default 0.5
        Mean corruption level, in [0, 1]; 0 plants every pattern intact.
    output : {"auto", "arrow", "csr", "lists"}, default "auto"
        ``"arrow"``: a ``pyarrow.LargeListArray`` of int32 item ids (the
        Rust buffers, no copy); ``"csr"``: a ``scipy.sparse.csr_matrix`` of
        bool, shape (n_transactions, n_items), mlxtend's sparse one-hot
        layout; ``"lists"``: a list of lists of ints (slow at millions of
        transactions: about 1 s per 10 million items); ``"auto"``:
        ``"arrow"`` if pyarrow is installed, else ``"csr"``. Every form is
        accepted by :func:`ferromine.frequent_patterns.fpgrowth` and friends.
    return_patterns : bool, default False
        Also return the planted patterns.
    n_jobs : int or None, default None
        Threads (sklearn convention); the output does not depend on it.

    Returns
    -------
    transactions : pyarrow.LargeListArray, scipy.sparse.csr_matrix or list
        As chosen by ``output``.
    patterns : list of list of int
        Only with ``return_patterns=True``: the planted patterns, ascending
        item ids.
    weights : ndarray of float64
        Only with ``return_patterns=True``: each pattern's probability of
        being picked (sums to 1).

    Raises
    ------
    TypeError
        A count that is not an int, or a rate that is not a real number.
    ValueError
        A parameter out of its range (the message gives the range).

    Examples
    --------
    >>> from ferromine.datasets import make_transactions
    >>> tx = make_transactions(1000, n_items=50, random_state=0, output="lists")
    >>> len(tx)
    1000
    >>> tx == make_transactions(1000, n_items=50, random_state=0, output="lists", n_jobs=1)
    True
    """
    n_transactions = _int_param("n_transactions", n_transactions, 1)
    n_items = _int_param("n_items", n_items, 1)
    if n_items > np.iinfo(np.int32).max:
        raise ValueError(f"n_items must be at most 2**31 - 1, got {n_items}")
    n_patterns = _int_param("n_patterns", n_patterns, 1)
    avg_len = _real_param("avg_len", avg_len, 1.0, float(n_items))
    avg_pattern_len = _real_param("avg_pattern_len", avg_pattern_len, 1.0, float(n_items))
    correlation = _real_param("correlation", correlation, 0.0, 1.0)
    corruption = _real_param("corruption", corruption, 0.0, 1.0)
    if output not in ("auto", "arrow", "csr", "lists"):
        raise ValueError(f"output must be 'auto', 'arrow', 'csr' or 'lists', got {output!r}")
    if output == "auto":
        try:
            import pyarrow  # noqa: F401
        except ImportError:  # pragma: no cover - pyarrow is optional
            output = "csr"
        else:
            output = "arrow"
    rng = check_random_state(random_state)
    top, bottom = (int(v) for v in rng.randint(np.iinfo(np.int32).max, size=2))
    seed = (top << 31) | bottom
    offsets, items, p_off, p_items, weights, _ = _core.fp_make_transactions(
        n_transactions,
        n_items,
        avg_len,
        n_patterns,
        avg_pattern_len,
        correlation,
        corruption,
        seed,
        n_threads=resolve_n_jobs(n_jobs),
    )
    tx: Any
    if output == "arrow":
        import pyarrow as pa

        tx = pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(items))
    elif output == "csr":
        import scipy.sparse as sp

        tx = sp.csr_matrix(
            (np.ones(len(items), dtype=bool), items, offsets), shape=(n_transactions, n_items)
        )
    else:
        tx = _split(offsets, items)
    if return_patterns:
        return tx, _split(p_off, p_items), weights
    return tx


def _split(offsets: np.ndarray, items: np.ndarray) -> list[list[int]]:
    flat = items.tolist()
    bounds = offsets.tolist()
    return [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
