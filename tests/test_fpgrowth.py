"""Frequent itemsets and association rules: exactness against the FIMI ground
truth, mlxtend 0.25.0 and a brute-force oracle; inputs, outputs, errors,
determinism, Ctrl-C and the estimator."""

from __future__ import annotations

import csv
import itertools
import math
import os
import pickle
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import scipy.sparse as sp
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.base import clone

from ferromine.frequent_patterns import (
    METRICS,
    FPGrowth,
    TransactionEncoder,
    association_rules,
    fpclosed,
    fpgrowth,
    fpmax,
    read_transactions,
)

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("FERROMINE_DATA", REPO.parent / "shared" / "data"))
FIMI = DATA / "fimi"


@pytest.fixture(scope="module")
def fimi_dir() -> Path:
    if not (FIMI / "GROUND_TRUTH.csv").is_file():
        pytest.skip(f"FIMI data not found at {FIMI} (set FERROMINE_DATA)")
    return FIMI


def mlxtend_fp():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlxtend.frequent_patterns as mf
    return mf


def as_set(df: pd.DataFrame) -> set:
    return {(float(s), frozenset(int(i) if isinstance(i, np.integer) else i for i in x))
            for s, x in zip(df["support"], df["itemsets"])}


def brute_force(onehot: np.ndarray, min_count: int) -> dict[frozenset, int]:
    n, m = onehot.shape
    out = {}
    for k in range(1, m + 1):
        for combo in itertools.combinations(range(m), k):
            c = int(onehot[:, list(combo)].all(axis=1).sum())
            if c >= min_count:
                out[frozenset(combo)] = c
    return out


def min_count_rule(ms: float, n: int) -> int:
    return min(c for c in range(1, n + 1) if c / n >= ms) if ms <= 1 else n


# ---------------------------------------------------------------- ground truth

GT_ROWS = []
if (FIMI / "GROUND_TRUTH.csv").is_file():
    with open(FIMI / "GROUND_TRUTH.csv") as f:
        GT_ROWS = list(csv.DictReader(f))


@pytest.fixture(scope="module")
def fimi_cache(fimi_dir):
    cache: dict[str, pa.Array] = {}

    def get(name: str) -> pa.Array:
        if name not in cache:
            cache[name] = read_transactions(fimi_dir / name)
        return cache[name]

    return get


@pytest.mark.parametrize(
    "row", GT_ROWS, ids=[f"{r['dataset']}-{r['min_support']}" for r in GT_ROWS] or None
)
def test_ground_truth_counts(fimi_cache, row):
    tx = fimi_cache(row["file"])
    assert len(tx) == int(row["n_transactions"])
    ms = float(row["min_support"])
    assert min_count_rule(ms, len(tx)) == int(row["min_count"])
    assert fpgrowth(tx, ms, output="count") == int(row["frequent"])
    assert fpclosed(tx, ms, output="count") == int(row["closed"])
    assert fpmax(tx, ms, output="count") == int(row["maximal"])
    # The absolute count gives the same answer.
    assert fpmax(tx, int(row["min_count"]), output="count") == int(row["maximal"])


RULE_ROWS = [r for r in GT_ROWS if r["rules"]]


@pytest.mark.parametrize(
    "row",
    # mushroom 20 % has 13.7 M rules (about 8 s): it runs in the slow set only.
    [pytest.param(r, marks=pytest.mark.slow) if int(r["rules"]) > 5_000_000 else r for r in RULE_ROWS],
    ids=[f"{r['dataset']}-{r['min_support']}" for r in RULE_ROWS] or None,
)
def test_ground_truth_rules(fimi_cache, row):
    tx = fimi_cache(row["file"])
    items = fpgrowth(tx, float(row["min_support"]), output="arrow")
    assert items.num_rows == int(row["frequent"])
    n = association_rules(items, len(tx), min_threshold=float(row["rules_min_confidence"]), output="count")
    assert n == int(row["rules"])


def test_read_transactions_gzip_and_text(tmp_path):
    text = "1 2 3\n\n2 3\n4\n"
    (tmp_path / "a.dat").write_text(text)
    import gzip

    with gzip.open(tmp_path / "a.dat.gz", "wt") as f:
        f.write(text)
    for name in ("a.dat", "a.dat.gz"):
        tx = read_transactions(tmp_path / name)
        assert tx.to_pylist() == [[1, 2, 3], [], [2, 3], [4]]
    (tmp_path / "b.dat").write_text("milk bread\nbread\n")
    assert read_transactions(tmp_path / "b.dat").to_pylist() == [["milk", "bread"], ["bread"]]


# ----------------------------------------------------- mlxtend and brute force

onehots = st.integers(1, 40).flatmap(
    lambda n: st.integers(1, 8).flatmap(
        lambda m: st.lists(st.lists(st.booleans(), min_size=m, max_size=m), min_size=n, max_size=n)
    )
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(rows=onehots, ms=st.floats(0.01, 1.0), max_len=st.one_of(st.none(), st.integers(1, 4)))
def test_matches_mlxtend_and_brute_force(rows, ms, max_len):
    X = np.array(rows, dtype=bool)
    n = X.shape[0]
    df = pd.DataFrame(X)
    c = min_count_rule(ms, n)
    oracle = brute_force(X, c)
    want = {(k / n, s) for s, k in oracle.items() if max_len is None or len(s) <= max_len}
    got = fpgrowth(df, ms, max_len=max_len)
    assert got["support"].dtype == np.float64
    assert as_set(got) == want
    assert len(got) == len(want)
    closed = {(k / n, s) for s, k in oracle.items()
              if not any(t > s and oracle[t] == k for t in oracle) and (max_len is None or len(s) <= max_len)}
    assert as_set(fpclosed(df, ms, max_len=max_len)) == closed
    maximal = {(k / n, s) for s, k in oracle.items()
               if not any(t > s for t in oracle) and (max_len is None or len(s) <= max_len)}
    assert as_set(fpmax(df, ms, max_len=max_len)) == maximal
    # mlxtend uses ceil(min_support * n) for itemsets of size >= 2; where that
    # rounds up it differs from the one-threshold rule (see API_CONTRACTS).
    assume(math.ceil(ms * n) == c)
    mf = mlxtend_fp()
    assert as_set(got) == as_set(mf.fpgrowth(df, ms, max_len=max_len))
    assert as_set(fpmax(df, ms, max_len=max_len)) == as_set(mf.fpmax(df, ms, max_len=max_len))


def test_mlxtend_threshold_difference_is_the_documented_one():
    # n = 100, {a, b} in 7 rows: 0.07 * 100 = 7.000000000000001.
    # a in rows 0-9, b in rows 0-6 and 10-12 (not a single path in the tree).
    X = np.zeros((100, 2), dtype=bool)
    X[:10, 0] = True
    X[:7, 1] = True
    X[10:13, 1] = True
    df = pd.DataFrame(X, columns=["a", "b"])
    got = as_set(fpgrowth(df, 0.07, use_colnames=True))
    assert (0.07, frozenset({"a", "b"})) in got and len(got) == 3
    theirs = as_set(mlxtend_fp().fpgrowth(df, 0.07, use_colnames=True))
    assert got - theirs == {(0.07, frozenset({"a", "b"}))}


# ------------------------------------------------------------ inputs, outputs

@pytest.fixture(scope="module")
def market():
    rng = np.random.default_rng(5)
    X = rng.random((300, 15)) < np.linspace(0.05, 0.6, 15)
    cols = [f"item{i}" for i in range(15)]
    return X, pd.DataFrame(X, columns=cols)


def test_all_input_forms_agree(market):
    X, df = market
    want = as_set(fpgrowth(df, 0.05, use_colnames=True))
    sparse_df = df.astype(pd.SparseDtype(bool, False))
    assert as_set(fpgrowth(sparse_df, 0.05, use_colnames=True)) == want
    by_pos = as_set(fpgrowth(df, 0.05))
    assert as_set(fpgrowth(sp.csr_matrix(X), 0.05)) == by_pos
    assert as_set(fpgrowth(sp.csc_matrix(X), 0.05)) == by_pos
    assert as_set(fpgrowth(X, 0.05)) == by_pos
    lists = [[c for c, v in zip(df.columns, row) if v] for row in X]
    assert as_set(fpgrowth(lists, 0.05, use_colnames=True)) == want
    assert as_set(fpgrowth(pa.array(lists), 0.05, use_colnames=True)) == want
    import polars as pl

    assert as_set(fpgrowth(pl.Series(lists), 0.05, use_colnames=True)) == want
    with pytest.warns(DeprecationWarning, match="non-bool"):
        assert as_set(fpgrowth(df.astype(int), 0.05, use_colnames=True)) == want


def test_sparse_frame_is_not_densified(market, monkeypatch):
    X, df = market
    sparse_df = df.astype(pd.SparseDtype(bool, False))
    want = as_set(fpgrowth(df, 0.1))

    def boom(*a, **k):
        raise AssertionError("densified")

    monkeypatch.setattr(pd.DataFrame, "to_numpy", boom)
    monkeypatch.setattr(pd.DataFrame, "values", property(boom))
    assert as_set(fpgrowth(sparse_df, 0.1)) == want


def test_outputs_agree(market):
    _, df = market
    frame = fpgrowth(df, 0.05, use_colnames=True)
    table = fpgrowth(df, 0.05, use_colnames=True, output="arrow")
    assert table.column_names == ["support", "itemsets"]
    assert {(s, frozenset(i)) for s, i in zip(table["support"].to_pylist(), table["itemsets"].to_pylist())} == as_set(frame)
    polars_df = fpgrowth(df, 0.05, use_colnames=True, output="polars")
    assert polars_df.height == len(frame)
    assert fpgrowth(df, 0.05, output="count") == len(frame)
    ids = fpgrowth(df, 0.05, output="arrow")
    assert {frozenset(i) for i in ids["itemsets"].to_pylist()} == set(fpgrowth(df, 0.05)["itemsets"])


def test_same_rows_same_order_for_any_n_jobs(market):
    _, df = market
    for fn in (fpgrowth, fpclosed, fpmax):
        a = fn(df, 0.02, n_jobs=1)
        b = fn(df, 0.02, n_jobs=2)
        assert list(a["itemsets"]) == list(b["itemsets"])
        assert a["support"].tolist() == b["support"].tolist()


def test_edge_cases():
    mf = mlxtend_fp()
    empty = pd.DataFrame()
    assert fpgrowth(empty).shape == (0, 2)
    assert list(fpgrowth(empty).columns) == ["support", "itemsets"]
    one = pd.DataFrame({"a": [True], "b": [False]})
    assert as_set(fpgrowth(one, 0.5)) == as_set(mf.fpgrowth(one, 0.5))
    assert as_set(fpmax(one, 0.5)) == {(1.0, frozenset({0}))}
    # An item in every transaction is reported (pyfim omits it).
    full = pd.DataFrame({"a": [True] * 4, "b": [True, False, True, False]})
    assert as_set(fpgrowth(full, 0.5, use_colnames=True)) == {
        (1.0, frozenset("a")), (0.5, frozenset("b")), (0.5, frozenset("ab"))}
    assert as_set(fpclosed(full, 0.5, use_colnames=True)) == {(1.0, frozenset("a")), (0.5, frozenset("ab"))}
    assert fpgrowth([[], [], []], 0.5, output="count") == 0
    assert fpgrowth([["x", "x", "y"], ["x"]], 1.0, use_colnames=True)["itemsets"].tolist() == [frozenset("x")]


@pytest.mark.parametrize("ms", [0.0, -0.1, 1.5, float("nan")])
def test_bad_min_support(market, ms):
    with pytest.raises(ValueError, match="min_support"):
        fpgrowth(market[1], ms)


def test_bad_inputs(market):
    _, df = market
    with pytest.raises(ValueError, match="NaN values are not permitted"), pytest.warns(DeprecationWarning):
        fpgrowth(pd.DataFrame({"a": [1.0, np.nan]}), 0.5)
    with pytest.raises(ValueError, match="allowed values .* Found value 2"), pytest.warns(DeprecationWarning):
        fpgrowth(pd.DataFrame({"a": [1, 2]}), 0.5)
    with pytest.raises(TypeError, match="bool"):
        fpgrowth(df, True)
    with pytest.raises(ValueError, match="count must be >= 1"):
        fpgrowth(df, 0)
    with pytest.raises(ValueError, match="max_len"):
        fpgrowth(df, 0.1, max_len=0)
    with pytest.raises(ValueError, match="output"):
        fpgrowth(df, 0.1, output="json")
    with pytest.raises(TypeError, match="expected a one-hot DataFrame"):
        fpgrowth(42, 0.1)
    with pytest.raises(ValueError, match="null item"):
        fpgrowth(pa.array([["a", None]]), 0.1)


def test_memory_guard_says_what_to_do(market):
    _, df = market
    with pytest.raises(ValueError, match=r"max_itemsets=100 .*raise\s+min_support, set max_len"):
        fpgrowth(df, 0.01, max_itemsets=100)
    assert fpgrowth(df, 0.01, output="count") > 100


def test_ctrl_c_stops_a_long_mine(fimi_dir):
    # chess at 1 %: astronomically many itemsets, mined for the count only.
    code = (
        "import sys, time, signal, threading, os\n"
        "from ferromine.frequent_patterns import fpgrowth, read_transactions\n"
        f"tx = read_transactions({str(fimi_dir / 'chess.dat')!r})\n"
        "threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()\n"
        "t = time.time()\n"
        "try:\n"
        "    fpgrowth(tx, 0.01, output='count', n_jobs=2)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', time.time() - t - 0.5)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("interrupted"), out.stderr
    assert float(out.stdout.split()[1]) < 1.0


# ------------------------------------------------------------------- rules

@pytest.mark.parametrize(
    "name,ms,metric,thr",
    [("chess.dat", 0.85, "confidence", 0.95), ("mushroom.dat", 0.3, "lift", 1.2)],
)
def test_rules_match_mlxtend(fimi_dir, name, ms, metric, thr):
    mf = mlxtend_fp()
    tx = read_transactions(fimi_dir / name).to_pylist()
    te = TransactionEncoder()
    df = pd.DataFrame(te.fit_transform(tx), columns=te.columns_)
    items = fpgrowth(df, ms, use_colnames=True)
    ours = association_rules(items, len(df), metric=metric, min_threshold=thr)
    assert len(ours) >= 10_000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = mf.association_rules(items, len(df), metric=metric, min_threshold=thr)
    assert list(ours.columns) == list(theirs.columns)
    key = lambda r: (r.antecedents, r.consequents)  # noqa: E731
    a = {key(r): r for r in ours.itertuples(index=False)}
    b = {key(r): r for r in theirs.itertuples(index=False)}
    assert a.keys() == b.keys()
    x = np.array([list(a[k])[2:] for k in a], dtype=float)
    y = np.array([list(b[k])[2:] for k in a], dtype=float)
    np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)
    assert np.array_equal(np.isinf(x), np.isinf(y))


@settings(max_examples=30, deadline=None, derandomize=True)
@given(rows=onehots, thr=st.floats(0.0, 1.0), metric=st.sampled_from(METRICS))
def test_rules_random_vs_mlxtend(rows, thr, metric):
    df = pd.DataFrame(np.array(rows, dtype=bool))
    items = fpgrowth(df, 0.2)
    assume(len(items) > 0)
    mf = mlxtend_fp()
    ours = association_rules(items, len(df), metric=metric, min_threshold=thr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = mf.association_rules(items, len(df), metric=metric, min_threshold=thr)
    a = {(r[0], r[1]): np.array(r[2:], float) for r in ours.itertuples(index=False)}
    b = {(r[0], r[1]): np.array(r[2:], float) for r in theirs.itertuples(index=False)}
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-12, atol=1e-12)


def test_rules_options_and_errors(market):
    _, df = market
    items = fpgrowth(df, 0.05, use_colnames=True)
    full = association_rules(items, len(df), min_threshold=0.0)
    short = association_rules(items, len(df), min_threshold=0.0, max_antecedent_len=1, max_consequent_len=1)
    assert len(short) == sum(1 for r in full.itertuples() if len(r.antecedents) == 1 and len(r.consequents) == 1)
    assert association_rules(items, len(df), min_threshold=0.0, output="count") == len(full)
    table = association_rules(fpgrowth(df, 0.05, use_colnames=True, output="arrow"), len(df), min_threshold=0.0, output="arrow")
    assert table.num_rows == len(full)
    sub = association_rules(items, len(df), min_threshold=0.0, return_metrics=["lift", "support"])
    assert list(sub.columns) == ["antecedents", "consequents", "lift", "support"]
    only = association_rules(items, support_only=True, min_threshold=0.0)
    assert only["confidence"].isna().all() and len(only) == len(full)
    with pytest.raises(KeyError, match="support_only"):
        association_rules(fpmax(df, 0.05), min_threshold=0.0)
    with pytest.raises(ValueError, match="empty"):
        association_rules(items.iloc[:0])
    with pytest.raises(ValueError, match="Metric must be"):
        association_rules(items, metric="nope")
    with pytest.raises(ValueError, match="columns 'support' and 'itemsets'"):
        association_rules(items.rename(columns={"support": "s"}))
    with pytest.raises(TypeError, match="df_orig"):
        association_rules(items, null_values=True)
    with pytest.raises(ValueError, match="max_rules"):
        association_rules(items, min_threshold=0.0, max_rules=10)
    nothing = association_rules(items, min_threshold=2.0)
    assert list(nothing.columns) == ["antecedents", "consequents"] + METRICS and len(nothing) == 0


# ------------------------------------------------- encoder and estimator

def test_transaction_encoder_matches_mlxtend():
    from mlxtend.preprocessing import TransactionEncoder as MTE

    tx = [["milk", "bread"], ["bread", "eggs", "eggs"], [], ["milk"]]
    ours, theirs = TransactionEncoder().fit(tx), MTE().fit(tx)
    assert ours.columns_ == theirs.columns_
    np.testing.assert_array_equal(ours.transform(tx), theirs.transform(tx))
    assert (ours.transform(tx, sparse=True) != theirs.transform(tx, sparse=True)).nnz == 0
    assert ours.inverse_transform(ours.transform(tx)) == [sorted(set(t)) for t in tx]
    with pytest.raises(KeyError):
        ours.transform([["caviar"]])


def test_estimator(market):
    X, df = market
    est = FPGrowth(min_support=0.1, kind="closed")
    assert clone(est).get_params() == est.get_params()
    est.fit(df)
    assert as_set(est.frequent_itemsets_) == as_set(fpclosed(df, 0.1, use_colnames=True))
    feats = est.transform(df)
    assert feats.shape == (len(df), len(est.frequent_itemsets_))
    # Column k is 1 exactly where the transaction holds every item of itemset k.
    for k, items in enumerate(est.frequent_itemsets_["itemsets"][:20]):
        want = df[list(items)].all(axis=1).to_numpy()
        np.testing.assert_array_equal(feats[:, k].toarray().ravel() == 1, want)
    again = pickle.loads(pickle.dumps(est))
    assert (again.transform(df) != feats).nnz == 0
    assert len(est.get_feature_names_out()) == feats.shape[1]
    with pytest.raises(ValueError, match="kind"):
        FPGrowth(kind="all-of-them").fit(df)


# ------------------------------------------------------------------- safety

EMPTY_SOURCES = {
    "frame": lambda: pd.DataFrame(),
    "frame-0-rows": lambda: pd.DataFrame({"a": pd.Series([], dtype=bool)}),
    "frame-0-cols": lambda: pd.DataFrame(index=range(3)),
    "list": lambda: [],
    "arrow": lambda: pa.array([], pa.large_list(pa.int64())),
    "csr": lambda: sp.csr_matrix((0, 4), dtype=bool),
    "ndarray": lambda: np.zeros((0, 3), dtype=bool),
}


@pytest.mark.parametrize("fn", [fpgrowth, fpmax, fpclosed])
@pytest.mark.parametrize("source", list(EMPTY_SOURCES))
def test_empty_input_gives_an_empty_result(fn, source):
    data = EMPTY_SOURCES[source]
    frame = fn(data(), 0.5)
    assert list(frame.columns) == ["support", "itemsets"] and len(frame) == 0
    table = fn(data(), 0.5, output="arrow")
    assert table.column_names == ["support", "itemsets"] and table.num_rows == 0
    assert fn(data(), 0.5, output="count") == 0
    if source.startswith("frame"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mlxtend divides 0 by 0 here
            assert len(mlxtend_fp().fpgrowth(data(), 0.5)) == 0  # mlxtend agrees
    # Nothing to split into rules: mlxtend's ValueError.
    with pytest.raises(ValueError, match="empty"):
        association_rules(frame)
    if source == "frame-0-cols":  # 3 empty transactions: fitted, no itemsets
        assert len(FPGrowth().fit(data()).frequent_itemsets_) == 0
    else:
        with pytest.raises(ValueError, match="0 transactions"):
            FPGrowth().fit(data())
    with pytest.raises(ValueError, match="min_support"):
        fn(data(), 1.5)  # parameters are still checked


def test_single_transaction_matches_mlxtend():
    mf = mlxtend_fp()
    one = pd.DataFrame({"a": [True], "b": [True], "c": [True], "d": [False]})
    items = fpgrowth(one, 1.0, use_colnames=True)
    assert as_set(items) == as_set(mf.fpgrowth(one, 1.0, use_colnames=True))
    assert len(items) == 7
    assert as_set(fpclosed(one, 1.0, use_colnames=True)) == {(1.0, frozenset("abc"))}
    assert as_set(fpmax(one, 1.0, use_colnames=True)) == as_set(mf.fpmax(one, 1.0, use_colnames=True))
    # Every rule has confidence 1 and consequent support 1: conviction inf,
    # certainty and zhangs_metric 0 by mlxtend's conventions.
    ours = association_rules(items, 1, min_threshold=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mlxtend divides by 1 - sC = 0
        theirs = mf.association_rules(items, 1, min_threshold=0.0)
    a = {(r[0], r[1]): list(r[2:]) for r in ours.itertuples(index=False)}
    b = {(r[0], r[1]): list(r[2:]) for r in theirs.itertuples(index=False)}
    assert a == b and len(a) == 12
    assert np.isinf(ours["conviction"]).all() and (ours["certainty"] == 0).all()


def test_empty_transactions_count_in_the_denominator():
    want = {(0.5, frozenset("a")), (0.25, frozenset("b")), (0.25, frozenset("ab"))}
    assert as_set(fpgrowth([["a"], [], [], ["a", "b"]], 0.25, use_colnames=True)) == want
    # A null Arrow list is an empty transaction.
    assert as_set(fpgrowth(pa.array([["a"], None, [], ["a", "b"]]), 0.25, use_colnames=True)) == want
    # All-False rows of a one-hot frame, as mlxtend.
    df = pd.DataFrame({"a": [True, False, False, True], "b": [False, False, False, True]})
    assert as_set(fpgrowth(df, 0.25, use_colnames=True)) == want
    assert as_set(mlxtend_fp().fpgrowth(df, 0.25, use_colnames=True)) == want
    # Only empty transactions: nothing is frequent, even at the lowest count.
    assert fpgrowth([[], []], 1, output="count") == 0


def test_missing_values_without_null_values():
    msg = "NaN values are not permitted in the DataFrame when null_values=False"
    # pandas' nullable bool holds NA: the same message, not NumPy's.
    with pytest.raises(ValueError, match=msg):
        fpgrowth(pd.DataFrame({"a": pd.array([True, None, False], dtype="boolean")}), 0.5)
    with pytest.raises(ValueError, match=msg), pytest.warns(DeprecationWarning, match="non-bool"):
        fpgrowth(pd.DataFrame({"a": pd.array([1, None, 0], dtype="Int64")}), 0.5)
    with pytest.raises(ValueError, match=msg), pytest.warns(DeprecationWarning, match="non-bool"):
        fpgrowth(pd.DataFrame({"a": [True, None, False]}, dtype=object), 0.5)
    with pytest.raises(ValueError, match=msg), pytest.warns(DeprecationWarning, match="non-bool"):
        fpgrowth(pd.DataFrame({"a": pd.arrays.SparseArray([1.0, np.nan, 0.0], fill_value=0.0)}), 0.5)
    with pytest.raises(ValueError, match=msg):
        fpgrowth(sp.csr_matrix(np.array([[1.0, np.nan]])), 0.5)
    # A nullable bool frame without NA is mined like a bool one, no warning.
    ok = pd.DataFrame({"a": pd.array([True, True, False], dtype="boolean"), "b": pd.array([True, False, False], dtype="boolean")})
    assert as_set(fpgrowth(ok, 0.3)) == as_set(fpgrowth(ok.astype(bool), 0.3))
    # fpmax/fpclosed with null_values=True and NaN: mined (tests/test_fpgrowth_nan_rules.py);
    # here the one-column case: {a} in 1 of the 2 known rows.
    for fn in (fpmax, fpclosed):
        with pytest.warns(DeprecationWarning):
            res = fn(pd.DataFrame({"a": [1.0, np.nan, 0.0]}), 0.5, null_values=True)
        assert as_set(res) == {(0.5, frozenset([0]))}


@pytest.mark.parametrize("seed", range(12))
def test_null_values_match_mlxtend(seed):
    # mlxtend's null_values=True: supports over the rows without NaN in the itemset's columns.
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(8, 40)), int(rng.integers(2, 7))
    values = (rng.random((n, m)) < rng.uniform(0.3, 0.8)).astype(np.float64)
    values[rng.random((n, m)) < rng.uniform(0.05, 0.3)] = np.nan
    if seed == 0:
        values[:, 0] = np.nan  # a column without any known value
    values[0, -1] = np.nan  # at least one NaN
    df = pd.DataFrame(values, columns=[f"c{j}" for j in range(m)])
    for ms in (0.15, 0.3, 0.5):
        assume_same_threshold = math.ceil(ms * n)
        assert assume_same_threshold / n >= ms > (assume_same_threshold - 1) / n
        for max_len in (None, 2):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                want = mlxtend_fp().fpgrowth(df, ms, null_values=True, use_colnames=True, max_len=max_len)
            with pytest.warns(DeprecationWarning, match="non-bool"):
                got = fpgrowth(df, ms, null_values=True, use_colnames=True, max_len=max_len)
            assert as_set(got) == as_set(want), (seed, ms, max_len)
            assert got["support"].dtype == np.float64
            with pytest.warns(DeprecationWarning, match="non-bool"):
                assert fpgrowth(df, ms, null_values=True, max_len=max_len, output="count") == len(want)
    if seed == 0:
        return  # mlxtend divides by zero on an all-NaN object column
    # Objects True/False/NaN: mlxtend's bool check passes (no warning), same answer.
    raw = np.empty((n, m), dtype=object)
    raw[:] = values == 1
    raw[np.isnan(values)] = np.nan
    obj = pd.DataFrame(raw, columns=df.columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = mlxtend_fp().fpgrowth(obj, 0.3, null_values=True, use_colnames=True)
    assert as_set(fpgrowth(obj, 0.3, null_values=True, use_colnames=True)) == as_set(want)


def test_null_values_bad_value():
    df = pd.DataFrame({"a": [1.0, np.nan, 2.0], "b": [0.0, 1.0, 1.0]})
    with pytest.raises(ValueError, match="True, False, 0, 1, NaN. Found value 2.0"), pytest.warns(DeprecationWarning):
        fpgrowth(df, 0.5, null_values=True)


def test_non_bool_sparse_frame_warns_like_mlxtend():
    df = pd.DataFrame({"a": pd.arrays.SparseArray([1, 0, 1, 1], fill_value=0),
                       "b": pd.arrays.SparseArray([1, 0, 0, 1], fill_value=0)})
    with pytest.warns(DeprecationWarning, match="non-bool"):
        ours = fpgrowth(df, 0.5)
    with pytest.warns(DeprecationWarning, match="non-bool"):
        theirs = mlxtend_fp().fpgrowth(df, 0.5)
    assert as_set(ours) == as_set(theirs)


def test_limits_are_checked(market):
    _, df = market
    for bad in ("x", -1, 1.5, True):
        with pytest.raises(ValueError, match="max_itemsets must be None or an int >= 0"):
            fpgrowth(df, 0.1, max_itemsets=bad)
        with pytest.raises(ValueError, match="max_rules must be None or an int >= 0"):
            association_rules(fpgrowth(df, 0.1), max_rules=bad)
    # A count above the number of transactions finds nothing (no overflow).
    assert fpgrowth(df, 10**30, output="count") == 0


def test_memory_guards_on_every_kind(market):
    _, df = market
    n_closed = fpclosed(df, 0.01, output="count", max_itemsets=None)
    assert n_closed > 100
    for fn in (fpclosed, fpmax):
        with pytest.raises(ValueError, match=r"max_itemsets=100 .*so far"):
            fn(df, 0.01, max_itemsets=100)
    with pytest.raises(ValueError, match=r"max_itemsets=100 .*so far"):
        FPGrowth(0.01, max_itemsets=100).fit(df)
    items = fpgrowth(df, 0.02)
    n_rules = association_rules(items, min_threshold=0.0, output="count", max_rules=10)
    assert n_rules > 10  # the count output is not guarded: it builds nothing
    with pytest.raises(ValueError, match=r"max_rules=10 rules .*raise min_threshold"):
        association_rules(items, min_threshold=0.0, max_rules=10, output="arrow")


def test_ctrl_c_stops_rules_and_the_generator(fimi_dir):
    code = (
        "import os, signal, threading, time\n"
        "from ferromine.datasets import make_transactions\n"
        "from ferromine.frequent_patterns import association_rules, fpgrowth, read_transactions\n"
        f"tx = read_transactions({str(fimi_dir / 'mushroom.dat')!r})\n"
        "items = fpgrowth(tx, 0.1, output='arrow')\n"
        "def interrupted(call):\n"
        "    threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()\n"
        "    t = time.time()\n"
        "    try:\n"
        "        call()\n"
        "    except KeyboardInterrupt:\n"
        "        return time.time() - t - 0.5\n"
        "    return 'finished'\n"
        "print(interrupted(lambda: association_rules(items, len(tx), min_threshold=0.0, output='count')))\n"
        "print(interrupted(lambda: make_transactions(50_000_000, random_state=0, n_jobs=2)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = out.stdout.split()
    assert len(lines) == 2, out.stderr
    for late in lines:
        assert float(late) < 1.0


def test_frozenset_building_restores_the_gc_state(market):
    import gc

    _, df = market
    assert gc.isenabled()
    want = as_set(fpgrowth(df, 0.1))
    assert gc.isenabled()
    gc.disable()
    try:
        assert as_set(fpgrowth(df, 0.1)) == want
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_frozensets_are_untracked_only_when_cycle_free():
    import gc

    from ferromine import _core

    off = np.array([0, 2, 3, 3], dtype=np.uint64)
    items = np.array([0, 1, 1], dtype=np.uint32)
    sets = _core.fp_frozensets(off, items)
    assert sets.dtype == object and list(sets) == [frozenset({0, 1}), frozenset({1}), frozenset()]
    # Int (or str) elements cannot reference anything: the sets leave the GC.
    assert not any(gc.is_tracked(s) for s in sets)
    assert not any(gc.is_tracked(s) for s in _core.fp_frozensets(off, items, ["a", "b"]))

    class Label:  # hashable by identity, and tracked: could point back at its set
        pass

    labels = [Label(), Label()]
    sets = _core.fp_frozensets(off, items, labels)
    assert all(gc.is_tracked(s) for s in sets)
    assert set(sets[0]) == set(labels)
    # An unhashable label fails cleanly, with the GC switched back on.
    with pytest.raises(TypeError, match="unhashable"):
        _core.fp_frozensets(off, items, [[1], [2]])
    assert gc.isenabled()
    with pytest.raises(ValueError, match="fewer labels"):
        _core.fp_frozensets(off, items, ["a"])
