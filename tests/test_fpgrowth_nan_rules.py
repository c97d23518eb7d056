"""null_values=True with NaN: association_rules and fpmax against mlxtend
(rasbt/mlxtend#1106), fpclosed/fpmax/fpgrowth against a brute-force oracle."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from ferromine.frequent_patterns import METRICS, association_rules, fpclosed, fpgrowth, fpmax


def mlxtend_fp():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlxtend.frequent_patterns as mf
    return mf


def rules_map(df: pd.DataFrame) -> dict:
    """{(antecedent, consequent): metric values} with ints as Python ints."""
    def fs(x):
        return frozenset(int(i) if isinstance(i, np.integer) else i for i in x)

    cols = [c for c in df.columns if c not in ("antecedents", "consequents")]
    return {
        (fs(a), fs(c)): tuple(float(v) for v in row)
        for a, c, row in zip(df["antecedents"], df["consequents"], df[cols].to_numpy(dtype=np.float64))
    }


def assert_same_rules(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns)
    g, w = rules_map(got), rules_map(want)
    assert g.keys() == w.keys()
    for key, wv in w.items():
        # Same formulas, same operation order: equal to 1e-12, inf and NaN alike.
        np.testing.assert_allclose(g[key], wv, rtol=1e-12, atol=1e-12, err_msg=str(key))


def nan_frame(seed: int, labels: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(10, 40)), int(rng.integers(3, 6))
    values = (rng.random((n, m)) < rng.uniform(0.4, 0.8)).astype(np.float64)
    values[rng.random((n, m)) < rng.uniform(0.05, 0.25)] = np.nan
    values[0, -1] = np.nan  # at least one NaN
    cols = [f"c{j}" for j in range(m)] if labels else list(range(m))
    return pd.DataFrame(values, columns=cols)


@pytest.mark.parametrize("seed", range(6))
def test_rules_with_nan_match_mlxtend(seed):
    mf = mlxtend_fp()
    labels = seed % 2 == 0
    df = nan_frame(seed, labels)
    n = len(df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        items = mf.fpgrowth(df, 0.2, null_values=True, use_colnames=labels)
    assert (items["itemsets"].map(len) >= 2).any(), "the seed must give rules"
    for metric, threshold in (("confidence", 0.0), ("confidence", 0.6), ("lift", 1.0), ("support", 0.2)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = mf.association_rules(
                items, num_itemsets=n, df_orig=df, null_values=True, metric=metric, min_threshold=threshold
            )
        with pytest.warns(DeprecationWarning, match="non-bool"):
            got = association_rules(
                items, num_itemsets=n, df_orig=df, null_values=True, metric=metric, min_threshold=threshold
            )
        assert_same_rules(got, want)
        with pytest.warns(DeprecationWarning, match="non-bool"):
            count = association_rules(
                items, num_itemsets=n, df_orig=df, null_values=True, metric=metric,
                min_threshold=threshold, output="count",
            )
        assert count == len(want)
    # The NaN counts matter here: without them the metrics differ.
    plain = association_rules(items, num_itemsets=n, min_threshold=0.0)
    with pytest.warns(DeprecationWarning, match="non-bool"):
        with_nan = association_rules(items, num_itemsets=n, df_orig=df, null_values=True, min_threshold=0.0)
    assert rules_map(plain) != rules_map(with_nan)


def test_rules_with_nan_arrow_and_limits():
    df = nan_frame(3, True)
    n = len(df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        items = mlxtend_fp().fpgrowth(df, 0.2, null_values=True, use_colnames=True)
    with pytest.warns(DeprecationWarning):
        frame = association_rules(items, num_itemsets=n, df_orig=df, null_values=True, min_threshold=0.0)
    with pytest.warns(DeprecationWarning):
        table = association_rules(
            items, num_itemsets=n, df_orig=df, null_values=True, min_threshold=0.0, output="arrow"
        )
    assert table.num_rows == len(frame)
    assert {(frozenset(a), frozenset(c)) for a, c in zip(table["antecedents"].to_pylist(),
                                                         table["consequents"].to_pylist())} == set(rules_map(frame))
    np.testing.assert_allclose(np.sort(table["confidence"].to_numpy()), np.sort(frame["confidence"].to_numpy()))
    with pytest.raises(ValueError, match="max_rules"), pytest.warns(DeprecationWarning):
        association_rules(items, num_itemsets=n, df_orig=df, null_values=True, min_threshold=0.0, max_rules=1)
    with pytest.raises(TypeError, match="num_itemsets"):
        association_rules(items, df_orig=df, null_values=True)
    assert list(frame.columns) == ["antecedents", "consequents"] + METRICS


# ------------------------------------------- fpmax / fpclosed with NaN


def nan_oracle(df: pd.DataFrame, ms: float, kind: str) -> set:
    """Brute force of mlxtend's null_values semantics: candidates over the
    entered items with NaN counted as present (all / closed / maximal among
    those reaching the count), plus the entered items below it; then the
    NaN-discounted support filter."""
    values = df.to_numpy(dtype=np.float64)
    n, m = values.shape
    nan = np.isnan(values)
    one = values == 1
    left = n - nan.sum(axis=0)
    allowed = [j for j in range(m) if left[j] > 0 and one[:, j].sum() / left[j] >= ms]
    present = one | nan
    min_count = math.ceil(ms * n)
    freq = {}
    for k in range(1, len(allowed) + 1):
        for combo in itertools.combinations(allowed, k):
            c = int(present[:, list(combo)].all(axis=1).sum())
            if c >= min_count:
                freq[frozenset(combo)] = c
    if kind == "closed":
        cand = [s for s, c in freq.items() if not any(t > s and d == c for t, d in freq.items())]
    elif kind == "maximal":
        cand = [s for s in freq if not any(t > s for t in freq)]
    else:
        cand = list(freq)
    cand += [frozenset([j]) for j in allowed if frozenset([j]) not in freq]
    out = set()
    for s in cand:
        cols = sorted(s)
        den = n - int(nan[:, cols].any(axis=1).sum())
        sup = int(one[:, cols].all(axis=1).sum()) / den if den else 0.0
        if sup >= ms:
            out.add((sup, frozenset(df.columns[j] for j in s)))
    return out


def as_set(df: pd.DataFrame) -> set:
    return {(float(s), frozenset(x)) for s, x in zip(df["support"], df["itemsets"])}


@pytest.mark.parametrize("seed", range(8))
def test_fpmax_fpclosed_with_nan(seed):
    df = nan_frame(100 + seed, True)
    n = len(df)
    mf = mlxtend_fp()
    for ms in (0.15, 0.3, 0.5):
        c = math.ceil(ms * n)
        if not (c / n >= ms > (c - 1) / n):
            continue  # mlxtend's two thresholds differ here (see API_CONTRACTS.md)
        with pytest.warns(DeprecationWarning, match="non-bool"):
            got_max = fpmax(df, ms, null_values=True, use_colnames=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want_max = mf.fpmax(df, ms, null_values=True, use_colnames=True)
        assert as_set(got_max) == as_set(want_max) == nan_oracle(df, ms, "maximal"), (seed, ms)
        with pytest.warns(DeprecationWarning, match="non-bool"):
            got_closed = fpclosed(df, ms, null_values=True, use_colnames=True)
        assert as_set(got_closed) == nan_oracle(df, ms, "closed"), (seed, ms)
        with pytest.warns(DeprecationWarning, match="non-bool"):
            got_all = fpgrowth(df, ms, null_values=True, use_colnames=True)
        assert as_set(got_all) == nan_oracle(df, ms, "all"), (seed, ms)
        with pytest.warns(DeprecationWarning, match="non-bool"):
            assert fpmax(df, ms, null_values=True, output="count") == len(want_max)
