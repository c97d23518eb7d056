"""The synthetic market-basket generator: determinism, shape statistics,
planted patterns, output forms and parameter errors."""

from __future__ import annotations

import doctest

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

import ferromine.datasets
from ferromine.datasets import make_transactions
from ferromine.frequent_patterns import fpgrowth, fpmax


def as_arrays(tx: pa.LargeListArray) -> tuple[np.ndarray, np.ndarray]:
    return tx.offsets.to_numpy(), tx.values.to_numpy()


def test_same_seed_same_data_for_any_n_jobs():
    # 3 chunks of 4096 and a partial one: chunk seams are crossed.
    kw = dict(n_items=300, avg_len=8, n_patterns=100, avg_pattern_len=3)
    a = make_transactions(12_500, random_state=42, n_jobs=1, **kw)
    b = make_transactions(12_500, random_state=42, n_jobs=2, **kw)
    c = make_transactions(12_500, random_state=np.random.RandomState(42), **kw)
    for x in (b, c):
        for u, v in zip(as_arrays(a), as_arrays(x)):
            np.testing.assert_array_equal(u, v)
    other = make_transactions(12_500, random_state=43, **kw)
    assert not np.array_equal(as_arrays(a)[1][:1000], as_arrays(other)[1][:1000])
    # A shorter run is a prefix of a longer one (rows depend on their chunk only).
    short = make_transactions(5000, random_state=42, **kw)
    assert short.to_pylist() == a.slice(0, 5000).to_pylist()


@pytest.mark.parametrize("avg_len,avg_pattern_len", [(10, 4), (5, 2), (20, 6), (1, 1)])
def test_shape_statistics(avg_len, avg_pattern_len):
    n, m = 20_000, 1000
    tx = make_transactions(n, m, avg_len, 500, avg_pattern_len, random_state=0)
    offsets, items = as_arrays(tx)
    assert len(tx) == n and offsets[0] == 0 and offsets[-1] == len(items)
    lengths = np.diff(offsets)
    assert abs(lengths.mean() - avg_len) < 0.05 * avg_len, lengths.mean()
    assert (lengths >= 1).all()
    assert items.dtype == np.int32 and items.min() >= 0 and items.max() < m
    # Ascending and distinct inside every transaction.
    rows = np.repeat(np.arange(n), lengths)
    same_row = rows[1:] == rows[:-1]
    assert (np.diff(items)[same_row] > 0).all()


def test_planted_patterns_are_found():
    tx, patterns, weights = make_transactions(
        20_000, 1000, 10, 20, 5, random_state=1, corruption=0.0, return_patterns=True
    )
    assert len(patterns) == len(weights) == 20
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert all(p == sorted(set(p)) and 0 <= min(p) and max(p) < 1000 for p in patterns)
    # Without corruption every transaction is a union of whole patterns.
    pats = [frozenset(p) for p in patterns]
    for t in tx.slice(0, 2000).to_pylist():
        s = set(t)
        covered = set().union(*(p for p in pats if p <= s))
        assert covered == s
    # The heavy patterns are frequent itemsets, at about their expected
    # support (a transaction holds about avg_len / avg_pattern_len of them).
    frequent = fpgrowth(tx, 0.02, use_colnames=True)  # labels = the item ids
    supports = dict(zip(frequent["itemsets"], frequent["support"]))
    found = set(supports)
    heavy = [(p, w) for p, w in zip(pats, weights) if w >= 0.05]
    assert heavy
    for p, w in heavy:
        assert p in found
        assert supports[p] > 1.5 * w
    # Random itemsets of the same size are not frequent: the items are spread.
    rng = np.random.default_rng(0)
    union = frozenset().union(*pats)
    loose = [frozenset(rng.choice(1000, 3, replace=False).tolist()) for _ in range(50)]
    assert not any(s in found for s in loose if not s <= union)


def test_corrupted_patterns_still_surface():
    tx, patterns, weights = make_transactions(20_000, 1000, 10, 20, 5, random_state=2, return_patterns=True)
    maximal = fpmax(tx, 0.01, use_colnames=True)["itemsets"]
    # Half the items are dropped now and then, yet each of the five heaviest
    # patterns lies whole inside a maximal frequent itemset.
    for k in np.argsort(-weights)[:5]:
        assert any(frozenset(patterns[k]) <= s for s in maximal)


def test_correlation_shares_items_between_consecutive_patterns():
    def mean_share(correlation: float) -> float:
        _, patterns, _ = make_transactions(
            10, 10_000, 5, 2000, 6, random_state=3, correlation=correlation, return_patterns=True
        )
        return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(patterns, patterns[1:])]))

    assert mean_share(0.0) < 0.01
    assert mean_share(1.0) > 0.35
    assert mean_share(0.5) < mean_share(1.0)


def test_output_forms_agree():
    kw = dict(n_transactions=3000, n_items=200, avg_len=6, n_patterns=50, avg_pattern_len=3, random_state=5)
    arrow = make_transactions(**kw, output="arrow")
    assert isinstance(arrow, pa.LargeListArray) and arrow.type.value_type == pa.int32()
    csr = make_transactions(**kw, output="csr")
    assert sp.issparse(csr) and csr.shape == (3000, 200) and csr.dtype == bool
    lists = make_transactions(**kw, output="lists")
    assert lists == arrow.to_pylist()
    assert [csr.indices[csr.indptr[i] : csr.indptr[i + 1]].tolist() for i in range(3000)] == lists
    assert isinstance(make_transactions(**kw), pa.LargeListArray)  # "auto" with pyarrow
    want = fpgrowth(lists, 0.02, output="count")
    assert fpgrowth(arrow, 0.02, output="count") == want
    assert fpgrowth(csr, 0.02, output="count") == want


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(n_transactions=0), ValueError, "n_transactions must be an int >= 1"),
        (dict(n_transactions=10.0), TypeError, "n_transactions must be an int"),
        (dict(n_items=0), ValueError, "n_items must be an int >= 1"),
        (dict(n_patterns=True), TypeError, "n_patterns must be an int"),
        (dict(avg_len=0.5), ValueError, r"avg_len must be in \[1, 1000\]"),
        (dict(avg_len=1001), ValueError, r"avg_len must be in \[1, 1000\]"),
        (dict(avg_len=float("nan")), ValueError, "avg_len"),
        (dict(avg_len="10"), TypeError, "avg_len must be a real number"),
        (dict(avg_pattern_len=0), ValueError, "avg_pattern_len"),
        (dict(correlation=1.5), ValueError, r"correlation must be in \[0, 1\]"),
        (dict(corruption=-0.1), ValueError, r"corruption must be in \[0, 1\]"),
        (dict(output="json"), ValueError, "output must be"),
        (dict(random_state="seed"), ValueError, "seed"),
    ],
)
def test_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        make_transactions(**{"n_transactions": 10, **kwargs})


def test_docstring_examples():
    result = doctest.testmod(ferromine.datasets, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
