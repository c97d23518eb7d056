"""PSI drift: golden vectors, properties, oracles, bad input, sklearn conventions."""

import json
import pickle

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import clone

from ferromine import _core
from ferromine.drift import DriftReport, PSIDrift, psi, severity
from ferromine.psi import qcut_probabilities

GOLDEN = [
    "normal_vs_shifted_normal",
    "normal_with_nans",
    "uniform_vs_uniform",
    "zero_inflated_ties",
    "categorical_strings",
]


def load_case(data_dir, name):
    arrays_ = np.load(data_dir / "psi" / f"{name}.npz")
    expected = json.loads((data_dir / "psi" / f"{name}.json").read_text())
    return arrays_["reference"], arrays_["current"], expected


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_vectors(data_dir, name):
    ref, cur, want = load_case(data_dir, name)
    if want["kind"] == "num":
        checks = {
            "numpy_reference_deciles": psi(ref, cur),
            "feature_engine_equal_frequency_bins10": psi(ref, cur, compat="feature_engine"),
            "feature_engine_equal_width_bins10": psi(
                ref, cur, compat="feature_engine", strategy="uniform"
            ),
            "evidently_valuedrift_psi": psi(ref, cur, compat="evidently"),
        }
    else:
        checks = {
            "numpy_reference_categorical": psi(ref, cur),
            "feature_engine_all_variables": psi(ref, cur, compat="feature_engine"),
            "evidently_valuedrift_psi": psi(ref, cur, compat="evidently"),
        }
    for key, got in checks.items():
        assert got == pytest.approx(want[key], abs=1e-12), key


def test_golden_through_every_input_type(data_dir):
    ref, cur, want = load_case(data_dir, "normal_with_nans")
    expected = want["feature_engine_equal_frequency_bins10"]
    frames = [
        (pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur})),
        (pl.DataFrame({"x": ref}), pl.DataFrame({"x": cur})),
        (pa.table({"x": ref}), pa.table({"x": cur})),
        (ref.reshape(-1, 1), cur.reshape(-1, 1)),
    ]
    for r, c in frames:
        got = PSIDrift(compat="feature_engine").fit(r).psi(c)
        assert float(np.asarray(got)[0]) == pytest.approx(expected, abs=1e-12), type(r)


def test_zero_inflated_default_differs_from_feature_engine_as_documented(data_dir):
    ref, cur, want = load_case(data_dir, "zero_inflated_ties")
    default = PSIDrift().fit(ref[:, None])
    fe = PSIDrift(compat="feature_engine").fit(ref[:, None])
    # The default keeps (-inf, 0] as a bin; feature-engine merges it away.
    assert default.bin_edges_[0][1] == 0.0
    assert fe.bin_edges_[0][1] > 0.0
    assert len(fe.bin_edges_[0]) < len(default.bin_edges_[0])


# ---------------------------------------------------------------- oracles
def numpy_counts(x, cuts):
    x = x[~np.isnan(x)]
    return np.bincount(np.searchsorted(cuts, x, side="left"), minlength=len(cuts) + 1)


finite_or_special = st.floats(allow_nan=True, allow_infinity=True, width=64)
columns = arrays(np.float64, st.integers(1, 300), elements=finite_or_special)


@given(columns)
def test_quantiles_equal_numpy(x):
    valid = x[~np.isnan(x)]
    assume(valid.size > 0 and np.isfinite(valid).all())
    probs = qcut_probabilities(10)
    values, n_le, n_valid, n_missing = _core.psi_quantiles(x[:, None], probs)
    np.testing.assert_array_equal(values[0], np.quantile(valid, probs))
    np.testing.assert_array_equal(n_le[0], [np.count_nonzero(valid <= v) for v in values[0]])
    assert n_valid[0] == valid.size and n_missing[0] == x.size - valid.size


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_large_quantiles_exact_with_ties_nan_inf(order, dtype):
    # Large enough for the sampled-bracket path; ties, NaN and infinities.
    rng = np.random.default_rng(7)
    n = 250_000
    x = np.round(rng.standard_normal((n, 3)), 2)
    x[rng.random((n, 3)) < 0.05] = np.nan
    x[rng.random((n, 3)) < 0.001] = np.inf
    x[:, 2] = np.where(rng.random(n) < 0.6, 0.0, x[:, 2])  # zero-inflated
    x = np.asarray(x, dtype=dtype, order=order)
    probs = qcut_probabilities(10)[1:-1]
    values, n_le, _, _ = _core.psi_quantiles(x, probs)
    for j in range(3):
        col = x[:, j].astype(np.float64)
        valid = col[~np.isnan(col)]
        np.testing.assert_array_equal(values[j], np.quantile(valid, probs))
        np.testing.assert_array_equal(n_le[j], [np.count_nonzero(valid <= v) for v in values[j]])


@given(arrays(np.float64, st.integers(2, 300), elements=st.floats(-1e6, 1e6, allow_subnormal=False)))
def test_feature_engine_edges_equal_pandas_qcut(x):
    try:
        _, edges = pd.qcut(x, 10, retbins=True, duplicates="drop")
    except ValueError:  # pandas refuses data whose edges all coincide
        assume(False)
    est = PSIDrift(compat="feature_engine").fit(x[:, None])
    np.testing.assert_array_equal(est.bin_edges_[0][1:-1], edges[1:-1])


@given(
    arrays(np.float64, st.integers(1, 200), elements=finite_or_special),
    arrays(np.float64, st.integers(1, 200), elements=finite_or_special),
)
def test_counts_equal_searchsorted_oracle(ref, cur):
    assume(np.isfinite(ref).any())
    est = PSIDrift().fit(ref[:, None])
    cuts = est.bin_edges_[0][1:-1]
    np.testing.assert_array_equal(est.reference_counts_[0], numpy_counts(ref, cuts))
    acc = est.accumulator().update(cur[:, None])
    np.testing.assert_array_equal(acc._counts.counts[0], numpy_counts(cur, cuts))


# ------------------------------------------------------------- properties
samples = arrays(
    np.float64,
    st.tuples(st.integers(5, 150), st.integers(1, 3)),
    elements=st.floats(-100, 100) | st.just(np.nan) | st.sampled_from([0.0, 1.0]),
)


@given(samples, samples, st.sampled_from(["quantile", "uniform"]), st.sampled_from(["drop", "bin"]))
def test_psi_is_non_negative(ref, cur, strategy, missing):
    assume(ref.shape[1] == cur.shape[1] and np.isfinite(ref).any(axis=0).all())
    values = PSIDrift(strategy=strategy, missing=missing).fit(ref).psi(cur)
    assert np.all((values >= 0) | np.isnan(values))


@given(samples, st.sampled_from(["drop", "bin"]))
def test_psi_of_data_against_itself_is_zero(x, missing):
    assume(np.isfinite(x).any(axis=0).all())
    np.testing.assert_array_equal(PSIDrift(missing=missing).fit(x).psi(x), 0.0)


@given(samples, samples, st.randoms(use_true_random=False))
def test_row_order_does_not_matter(ref, cur, rnd):
    assume(ref.shape[1] == cur.shape[1] and np.isfinite(ref).any(axis=0).all())
    perm_r = list(range(len(ref)))
    perm_c = list(range(len(cur)))
    rnd.shuffle(perm_r)
    rnd.shuffle(perm_c)
    a = PSIDrift().fit(ref).psi(cur)
    b = PSIDrift().fit(ref[perm_r]).psi(cur[perm_c])
    np.testing.assert_array_equal(a, b)


@given(samples, samples, st.integers(1, 4), st.sampled_from(["drop", "bin"]))
def test_streaming_equals_batch(ref, cur, n_parts, missing):
    assume(ref.shape[1] == cur.shape[1] and np.isfinite(ref).any(axis=0).all())
    est = PSIDrift(missing=missing).fit(ref)
    parts = np.array_split(cur, n_parts)
    acc = est.accumulator()
    for p in parts:
        acc.update(p)
    np.testing.assert_array_equal(acc.psi(), est.psi(cur))
    # Two accumulators merge into the same answer.
    left, right = est.accumulator(), est.accumulator()
    for p in parts[::2]:
        left.update(p)
    for p in parts[1::2]:
        right.update(p)
    if right.n_rows:
        left.merge(right)
    np.testing.assert_array_equal(left.psi(), est.psi(cur))


def test_thread_count_does_not_change_results():
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((300_000, 5))
    cur = rng.standard_normal((300_000, 5)) * 1.1
    one = PSIDrift(n_jobs=1).fit(ref)
    two = PSIDrift(n_jobs=2).fit(ref)
    for a, b in zip(one.bin_edges_, two.bin_edges_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(one.psi(cur), two.psi(cur))
    np.testing.assert_array_equal(one.psi(cur), PSIDrift(n_jobs=-1).fit(ref).psi(cur))


def test_all_input_types_agree():
    rng = np.random.default_rng(5)
    n = 5_000
    ref = {"a": rng.standard_normal(n), "b": rng.exponential(size=n).astype(np.float32),
           "c": rng.choice(["x", "y", "z"], n), "d": rng.random(n) < 0.3}
    cur = {"a": rng.standard_normal(n) + 0.2, "b": rng.exponential(1.3, size=n).astype(np.float32),
           "c": rng.choice(["x", "y", "w"], n), "d": rng.random(n) < 0.5}
    results = []
    for make in (pd.DataFrame, pl.DataFrame, pa.table):
        est = PSIDrift().fit(make(ref))
        results.append(np.asarray(est.psi(make(cur))))
        assert list(est.feature_names_in_) == ["a", "b", "c", "d"]
        assert list(est.feature_kinds_) == ["numeric", "numeric", "categorical", "categorical"]
    record_batch = pa.RecordBatch.from_pydict(ref)
    results.append(np.asarray(PSIDrift().fit(record_batch).psi(pa.RecordBatch.from_pydict(cur))))
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_numpy_layouts_agree():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((200_000, 6))
    y = rng.standard_normal((200_000, 6)) + 0.1
    base = PSIDrift().fit(x).psi(y)
    np.testing.assert_array_equal(PSIDrift().fit(np.asfortranarray(x)).psi(np.asfortranarray(y)), base)
    sliced = PSIDrift().fit(x[::2, ::2]).psi(y[::2, ::2])
    np.testing.assert_array_equal(sliced, PSIDrift().fit(x[::2, ::2].copy()).psi(y[::2, ::2].copy()))
    f32 = PSIDrift().fit(x.astype(np.float32)).psi(y.astype(np.float32))
    np.testing.assert_allclose(f32, base, atol=2e-3)


def test_read_only_memmap(tmp_path):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((20_000, 3))
    path = tmp_path / "x.npy"
    np.save(path, x)
    mm = np.load(path, mmap_mode="r")
    assert not mm.flags.writeable
    np.testing.assert_array_equal(PSIDrift().fit(mm).psi(mm[::-1]), 0.0)


# ------------------------------------------------------------ semantics
def test_missing_bin_shows_a_jump_in_missing_rate():
    rng = np.random.default_rng(9)
    ref = rng.standard_normal((20_000, 1))
    cur = rng.standard_normal((20_000, 1))
    cur[: 19_000] = np.nan  # 0 % -> 95 % missing
    dropped = PSIDrift(missing="drop").fit(ref).psi(cur)[0]
    binned = PSIDrift(missing="bin").fit(ref).compare(cur)
    assert dropped < 0.1
    assert binned.psi[0] > 1.0 and binned.drifted[0]
    assert binned.bins[0][-1] == "missing"


def test_categories_unseen_and_vanished_get_eps():
    ref = pd.DataFrame({"c": ["a"] * 50 + ["b"] * 50})
    cur = pd.DataFrame({"c": ["a"] * 50 + ["z"] * 50})
    report = PSIDrift(eps=1e-4).fit(ref).compare(cur)
    expected = (0.5 - 0.5) * np.log(1) + (1e-4 - 0.5) * np.log(1e-4 / 0.5) + (0.5 - 1e-4) * np.log(0.5 / 1e-4)
    assert report.psi[0] == pytest.approx(expected, rel=1e-12)
    assert report.bins[0] == ["a", "b", "z"]


def test_pandas_categorical_bool_and_nullable_columns():
    ref = pd.DataFrame({
        "cat": pd.Categorical(["x", "y", None, "x"] * 25),
        "flag": [True, False, True, True] * 25,
        "n": pd.array([1, 2, None, 4] * 25, dtype="Int64"),
    })
    est = PSIDrift().fit(ref)
    assert list(est.feature_kinds_) == ["categorical", "categorical", "numeric"]
    np.testing.assert_array_equal(np.asarray(est.psi(ref)), 0.0)
    assert est.reference_missing_[0] == 25 and est.reference_missing_[2] == 25


def test_categorical_features_parameter():
    ref = np.array([[1.0], [2.0], [2.0], [3.0]] * 10)
    cur = np.array([[1.0], [1.0], [2.0], [4.0]] * 10)
    est = PSIDrift(categorical_features=[0]).fit(ref)
    assert est.feature_kinds_[0] == "categorical"
    assert list(est.categories_[0]) == [1.0, 2.0, 3.0]
    assert est.compare(cur).bins[0] == [1.0, 2.0, 3.0, 4.0]


def test_threshold_and_severity():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((10_000, 3))
    cur = ref + [0.0, 0.5, 1.0]
    report = PSIDrift(threshold=0.25).fit(ref).compare(cur)
    assert list(report.severity) == [severity(v) for v in report.psi]
    assert list(report.severity) == ["none", "moderate", "major"]
    assert list(report.drifted) == [False, False, True]
    assert severity(0.1) == "moderate" and severity(0.25) == "moderate" and severity(0.2501) == "major"
    frame = report.to_frame()
    assert list(frame.columns) == ["psi", "threshold", "drifted", "severity", "n_bins"]


def test_auto_threshold_is_feature_engines_chi2_rule():
    from scipy.stats import chi2

    rng = np.random.default_rng(2)
    ref, cur = rng.standard_normal((1_000, 1)), rng.standard_normal((400, 1))
    report = PSIDrift(threshold="auto", p_value=0.01).fit(ref).compare(cur)
    assert report.threshold[0] == pytest.approx(chi2.ppf(0.99, 9) * (1 / 1_000 + 1 / 400), rel=1e-12)


def test_inf_is_an_extreme_value():
    ref = np.array([[-np.inf], [0.0], [1.0], [2.0], [np.inf]] * 20)
    est = PSIDrift(n_bins=2).fit(ref)
    assert np.isfinite(est.bin_edges_[0][1:-1]).all()
    assert est.reference_counts_[0].sum() == 100
    uniform = PSIDrift(n_bins=4, strategy="uniform").fit(ref)
    np.testing.assert_array_equal(uniform.bin_edges_[0][1:-1], [0.5, 1.0, 1.5])


def test_contributions_sum_to_psi():
    rng = np.random.default_rng(4)
    ref = rng.standard_normal((5_000, 2))
    report = PSIDrift().fit(ref).compare(ref * 1.3)
    for j in range(2):
        assert np.sum(report.contributions[j]) == pytest.approx(report.psi[j], rel=1e-12)
        frame = report.contributions_frame(j)
        assert list(frame.columns) == ["reference", "current", "contribution"]


def test_chunked_arrow_column_and_polars_series():
    rng = np.random.default_rng(11)
    ref, cur = rng.standard_normal(30_000), rng.standard_normal(30_000) + 0.2
    expected = psi(ref, cur)
    chunked = pa.chunked_array([ref[:10_000], ref[10_000:25_000], ref[25_000:]])
    assert psi(chunked, pa.chunked_array([cur[:7], cur[7:]])) == expected
    assert psi(pl.Series("x", ref), pl.Series("x", cur)) == expected
    assert psi(pd.Series(ref), pd.Series(cur)) == expected


def test_reference_proportions():
    ref = np.array([[0.0], [1.0], [2.0], [3.0], [np.nan]])
    est = PSIDrift(n_bins=2, missing="bin").fit(ref)
    np.testing.assert_array_equal(est.reference_counts_[0], [2, 2, 1])
    np.testing.assert_allclose(est.reference_proportions_[0], [0.4, 0.4, 0.2])
    dropped = PSIDrift(n_bins=2).fit(ref)
    np.testing.assert_allclose(dropped.reference_proportions_[0], [0.5, 0.5])


def test_series_output_with_names_and_array_without():
    ref = pd.DataFrame({"a": np.arange(100.0), "b": np.arange(100.0)[::-1]})
    out = PSIDrift().fit(ref).psi(ref)
    assert isinstance(out, pd.Series) and list(out.index) == ["a", "b"]
    assert isinstance(PSIDrift().fit(ref.to_numpy()).psi(ref.to_numpy()), np.ndarray)
    assert isinstance(psi(np.arange(10.0), np.arange(10.0)), float)


# -------------------------------------------------------------- bad input
def test_empty_reference():
    with pytest.raises(ValueError, match="0 sample.*the reference data is empty"):
        PSIDrift().fit(np.empty((0, 2)))
    with pytest.raises(ValueError, match="0 feature"):
        PSIDrift().fit(np.empty((5, 0)))


def test_all_nan_column_is_named():
    ref = pd.DataFrame({"ok": [1.0, 2.0, 3.0], "broken": [np.nan] * 3})
    with pytest.raises(ValueError, match="'broken'.*no non-missing values"):
        PSIDrift().fit(ref)
    with pytest.raises(ValueError, match="'broken'.*no non-missing values"):
        PSIDrift(strategy="uniform").fit(ref)


@pytest.mark.parametrize("n_bins", [0, 1, -3])
def test_n_bins_below_two(n_bins):
    with pytest.raises(ValueError, match="n_bins must be >= 2"):
        PSIDrift(n_bins=n_bins).fit(np.ones((5, 1)))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"strategy": "kmeans"}, "strategy must be one of"),
        ({"missing": "zero"}, "missing must be one of"),
        ({"compat": "popmon"}, "compat must be one of"),
        ({"eps": 0}, "eps must be"),
        ({"threshold": -1}, "threshold must be"),
        ({"threshold": "high"}, "threshold must be"),
        ({"compat": "evidently", "missing": "bin"}, "use missing='drop'"),
        ({"n_jobs": 0}, "n_jobs=0"),
    ],
)
def test_bad_parameters(params, message):
    with pytest.raises(ValueError, match=message):
        PSIDrift(**params).fit(np.ones((5, 1)))


def test_n_bins_type():
    with pytest.raises(TypeError, match="n_bins must be an int"):
        PSIDrift(n_bins=2.5).fit(np.ones((5, 1)))


def test_columns_differ_between_fit_and_score():
    ref = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    est = PSIDrift().fit(ref)
    with pytest.raises(ValueError, match="X has 1 features, but PSIDrift is expecting 2"):
        est.psi(ref[["a"]])
    with pytest.raises(ValueError, match="feature names should match"):
        est.psi(ref.rename(columns={"b": "c"}))
    arrow = PSIDrift().fit(pa.table(ref))
    with pytest.raises(ValueError, match="unseen at fit time:\\n- c"):
        arrow.psi(pa.table(ref.rename(columns={"b": "c"})))
    with pytest.raises(ValueError, match="column 'a' was numeric in the reference but is categorical"):
        est.psi(pd.DataFrame({"a": ["x", "y"], "b": [3.0, 4.0]}))


def test_mixed_type_object_column_is_named():
    ref = pd.DataFrame({"mixed": ["a", 1, "b", 2.5]})
    with pytest.raises(ValueError, match="column 'mixed' mixes value types"):
        PSIDrift().fit(ref)


def test_one_dimensional_input_to_the_estimator():
    with pytest.raises(ValueError, match="Expected a 2-D array"):
        PSIDrift().fit(np.arange(10.0))


def test_unreadable_dtype():
    with pytest.raises(ValueError, match="Complex data not supported"):
        PSIDrift().fit(np.ones((3, 2), dtype=complex))
    with pytest.raises(TypeError, match="cannot read"):
        PSIDrift().fit(pd.DataFrame({"t": pd.date_range("2020", periods=3)}))


def test_accumulator_errors():
    est = PSIDrift().fit(np.arange(20.0).reshape(-1, 1))
    with pytest.raises(ValueError, match="no current data"):
        est.accumulator().report()
    other = PSIDrift().fit(np.arange(40.0).reshape(-1, 1))
    with pytest.raises(ValueError, match="different bins"):
        est.accumulator().merge(other.accumulator())
    with pytest.raises(ValueError, match="cannot accumulate"):
        PSIDrift(compat="evidently").fit(np.arange(40.0).reshape(-1, 1)).accumulator()


def test_not_fitted():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        PSIDrift().psi(np.ones((3, 1)))


# ---------------------------------------------------- sklearn conventions
def test_clone_params_pickle():
    est = PSIDrift(n_bins=7, missing="bin", threshold=0.1)
    assert clone(est).get_params() == est.get_params()
    est.set_params(n_bins=5)
    assert est.n_bins == 5
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"u": rng.random(1000), "v": rng.choice(["p", "q"], 1000)})
    est.fit(ref)
    back = pickle.loads(pickle.dumps(est))
    pd.testing.assert_series_equal(back.psi(ref.iloc[::2]), est.psi(ref.iloc[::2]))
    acc = pickle.loads(pickle.dumps(est.accumulator().update(ref)))
    np.testing.assert_array_equal(np.asarray(acc.psi()), 0.0)
    assert "n_bins=5" in repr(est)


def test_report_type():
    report = PSIDrift().fit(np.arange(30.0).reshape(-1, 1)).compare(np.arange(30.0).reshape(-1, 1))
    assert isinstance(report, DriftReport)
    assert report.feature_names == ["x0"]
