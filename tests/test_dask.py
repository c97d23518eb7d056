"""ferromine.dask on a LocalCluster with two worker processes: every kernel
equals the single-machine result on the concatenated data."""

from __future__ import annotations

import json

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import dask  # noqa: E402
import dask.array as da  # noqa: E402
import dask.bag as db  # noqa: E402
import dask.dataframe as dd  # noqa: E402
import pandas as pd  # noqa: E402

import ferromine.dask as fd  # noqa: E402
from ferromine import _core  # noqa: E402
from ferromine.cluster import KMeans  # noqa: E402
from ferromine.drift import PSIDrift, psi  # noqa: E402
from ferromine.ensemble import IsolationForest  # noqa: E402
from ferromine.frequent_patterns import association_rules, fpclosed, fpgrowth, fpmax, read_transactions  # noqa: E402

#: Partition shares of the rows: unequal, one partition empty.
SHARES = (0.45, 0.0, 0.1, 0.3, 0.15)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0", silence_logs=40
    )
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def sizes(n: int, shares=SHARES) -> tuple[int, ...]:
    cuts = np.round(np.cumsum((0,) + tuple(shares)) * n).astype(int)
    cuts[-1] = n
    return tuple(int(b - a) for a, b in zip(cuts[:-1], cuts[1:]))


def darray(X: np.ndarray, shares=SHARES) -> da.Array:
    rows = sizes(len(X), shares)
    assert 0 in rows
    chunks = (rows,) if X.ndim == 1 else (rows, (X.shape[1],))
    return da.from_array(X, chunks=chunks)


def dframe(df: pd.DataFrame, shares=SHARES) -> dd.DataFrame:
    rows = sizes(len(df), shares)
    bounds = np.concatenate([[0], np.cumsum(rows)])
    parts = [dask.delayed(df.iloc[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    return dd.from_delayed(parts, meta=df.iloc[:0])


def dbag(rows: list, shares=SHARES) -> db.Bag:
    n = sizes(len(rows), shares)
    bounds = np.concatenate([[0], np.cumsum(n)])
    # traverse=False: do not walk millions of nested items looking for dask objects
    return db.from_delayed([dask.delayed(rows[a:b], traverse=False) for a, b in zip(bounds[:-1], bounds[1:])])


# --------------------------------------------------------------------- PSI


def mixed_frame(seed: int, n: int = 4000) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def one(shift):
        x = rng.normal(shift, 1, n)
        x[rng.random(n) < 0.05] = np.nan
        ties = np.where(rng.random(n) < 0.6, 0.0, rng.exponential(1 + shift, n))
        ints = rng.integers(0, 5, n).astype(np.float64)
        ints[:3] = [np.inf, -np.inf, np.nan]
        cat = rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.3, 0.2, 0.1] if shift == 0 else [0.25] * 4)
        return pd.DataFrame({"x": x, "ties": ties, "ints": ints, "cat": cat})

    return one(0.0), one(0.3)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"missing": "bin", "n_bins": 7, "categorical_features": ["ints"]},
        {"strategy": "uniform"},
        {"compat": "feature_engine"},
    ],
)
def test_psi_equals_single_machine_on_frames(client, params):
    ref, cur = mixed_frame(0)
    want_est = PSIDrift(**params).fit(ref)
    got_est = fd.fit_reference(dframe(ref), **params)
    for a, b in zip(want_est.bin_edges_, got_est.bin_edges_):
        assert (a is None and b is None) or np.array_equal(a, b)
    for a, b in zip(want_est.categories_, got_est.categories_):
        assert (a is None and b is None) or list(a) == list(b)
    for a, b in zip(want_est.reference_counts_, got_est.reference_counts_):
        np.testing.assert_array_equal(a, b)
    want = want_est.compare(cur)
    got = fd.compare(got_est, dframe(cur, (0.2, 0.3, 0.0, 0.5)))
    np.testing.assert_array_equal(got.psi, want.psi)
    assert got.bins == want.bins
    pd.testing.assert_series_equal(got_est.psi(cur), psi(ref, cur, **params))
    assert list(got_est.feature_names_in_) == list(want_est.feature_names_in_)


def test_psi_arrays_and_one_feature(client):
    rng = np.random.default_rng(1)
    ref = np.round(rng.normal(size=(3000, 3)), 1)  # heavy ties
    cur = ref[::-1] + [0.0, 0.1, 0.4]
    np.testing.assert_array_equal(fd.psi(darray(ref), darray(cur)), psi(ref, cur))
    assert fd.psi(darray(ref[:, 0]), darray(cur[:, 2])) == psi(ref[:, 0], cur[:, 2])


@pytest.mark.parametrize(
    "case", ["normal_vs_shifted_normal", "normal_with_nans", "uniform_vs_uniform", "zero_inflated_ties", "categorical_strings"]
)
def test_psi_golden_data(client, data_dir, case):
    arrays = np.load(data_dir / "psi" / f"{case}.npz")
    ref, cur = arrays["reference"], arrays["current"]
    golden = json.loads((data_dir / "psi" / f"{case}.json").read_text())
    got = fd.psi(darray(ref), darray(cur))
    assert got == psi(ref, cur)
    if ref.dtype.kind == "f":
        assert got == pytest.approx(golden["numpy_reference_deciles"], rel=1e-12)
        fe = fd.psi(darray(ref), darray(cur), compat="feature_engine")
        assert fe == pytest.approx(golden["feature_engine_equal_frequency_bins10"], rel=1e-12)


def test_psi_approx_edges_within_the_stated_bound(client):
    rng = np.random.default_rng(2)
    ref = rng.standard_t(3, size=20_000)
    size = 65
    est = fd.fit_reference(darray(ref), method="approx", sketch_size=size)
    exact = fd.fit_reference(darray(ref))
    np.testing.assert_array_equal(exact.bin_edges_[0], PSIDrift().fit(ref[:, None]).bin_edges_[0])
    rows = np.asarray(sizes(len(ref)))
    bound = int(np.sum(np.ceil(rows / (size - 1)))) + len(rows)
    s = np.sort(ref)
    want = np.quantile(ref, np.linspace(0, 1, 11)[1:-1])
    for edge, q in zip(est.bin_edges_[0][1:-1], want):
        rank = np.searchsorted(s, edge, side="right")
        assert abs(rank - np.searchsorted(s, q, side="right")) <= bound
    # Reference counts in the approximate bins are exact.
    cuts = est.bin_edges_[0][1:-1]  # right-closed bins (a, b]
    np.testing.assert_array_equal(est.reference_counts_[0], np.bincount(np.searchsorted(cuts, ref), minlength=cuts.size + 1))
    cur = rng.standard_t(3, size=20_000) + 0.2
    assert fd.psi(darray(ref), darray(cur), method="approx", sketch_size=size) == pytest.approx(psi(ref, cur), abs=0.01)


def test_psi_bad_input(client):
    ref = np.ones((10, 1))
    with pytest.raises(ValueError, match="method must be one of"):
        fd.psi(darray(ref), darray(ref), method="fast")
    with pytest.raises(ValueError, match="compat='evidently'"):
        fd.psi(darray(ref), darray(ref), compat="evidently")
    with pytest.raises(ValueError, match="no non-missing values"):
        fd.psi(darray(np.full((10, 1), np.nan)), darray(ref))
    with pytest.raises(ValueError, match="n_bins must be >= 2"):
        fd.psi(darray(ref), darray(ref), n_bins=1)


@pytest.mark.parametrize("seed", [0, 3])
def test_distributed_percentile_equals_numpy(client, seed):
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=5000), seed)  # from heavy ties to none
    x[:5] = [np.inf, -np.inf, 1e300, -1e300, 0.0]
    dx = darray(x)
    for q in (0.0, 3.7, 50.0, 100.0):
        # numpy interpolates across the infinities (NaN, with its warning): so must we
        with np.errstate(invalid="ignore"):
            got, want = fd.distributed_percentile(dx, q), np.percentile(x, q)
        # ==: which of two tied zeros (0.0, -0.0) sits at a rank is arbitrary
        assert got == want or (np.isnan(got) and np.isnan(want)), (q, got, want)


# ------------------------------------------------------------------ KMeans


def blobs(seed, n=3000, d=5, k=6, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 6, (k, d))
    X = centers[rng.integers(0, k, n)] + rng.normal(size=(n, d))
    return X.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kmeans_from_same_init_equals_single_machine(client, dtype):
    X = blobs(0, dtype=dtype)
    init = X[:6].copy()
    want = KMeans(6, init=init, n_init=1, tol=1e-3).fit(X)
    got = fd.KMeans(6, init=init, tol=1e-3).fit(darray(X))
    np.testing.assert_array_equal(got.labels_.compute(), want.labels_)
    np.testing.assert_allclose(got.cluster_centers_, want.cluster_centers_, rtol=1e-9 if dtype == np.float64 else 1e-6)
    assert got.cluster_centers_.dtype == want.cluster_centers_.dtype
    assert got.n_iter_ == want.n_iter_
    assert got.inertia_ == pytest.approx(want.inertia_, rel=1e-9 if dtype == np.float64 else 1e-5)
    np.testing.assert_array_equal(got.predict(darray(X)).compute(), want.predict(X))
    np.testing.assert_allclose(got.transform(darray(X)).compute(), want.transform(X), rtol=1e-6)


def test_kmeans_sample_weight_and_empty_cluster_relocation(client):
    X = blobs(1, n=2000, k=4)
    w = np.random.default_rng(1).uniform(0.1, 3, len(X))
    # A centre far from every row starts empty and is relocated.
    init = np.vstack([X[:4], np.full((1, X.shape[1]), 1e3)])
    want = KMeans(5, init=init, n_init=1, max_iter=50).fit(X, sample_weight=w)
    got = fd.KMeans(5, init=init, max_iter=50).fit(darray(X), sample_weight=darray(w))
    np.testing.assert_array_equal(got.labels_.compute(), want.labels_)
    np.testing.assert_allclose(got.cluster_centers_, want.cluster_centers_, rtol=1e-9)
    assert got.n_iter_ == want.n_iter_
    assert got.inertia_ == pytest.approx(want.inertia_, rel=1e-9)


def test_kmeans_odds_data(client, data_dir):
    X = np.load(data_dir / "odds" / "cardio.npz")["X"].astype(np.float64)
    init = X[np.random.default_rng(0).choice(len(X), 8, replace=False)]
    want = KMeans(8, init=init, n_init=1, max_iter=12).fit(X)
    got = fd.KMeans(8, init=init, max_iter=12).fit(darray(X))
    np.testing.assert_array_equal(got.labels_.compute(), want.labels_)
    np.testing.assert_allclose(got.cluster_centers_, want.cluster_centers_, rtol=1e-9)
    assert got.n_iter_ == want.n_iter_


def test_kmeans_parallel_init_on_the_cluster(client):
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(3)
    truth = rng.integers(0, 5, 3000)
    X = np.eye(5)[truth] * 50 + rng.normal(size=(3000, 5))
    a = fd.KMeans(5, random_state=0).fit(darray(X))
    b = fd.KMeans(5, random_state=0).fit(darray(X))
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    labels = a.labels_.compute()
    assert adjusted_rand_score(truth, labels) == 1.0
    # The Lloyd result from the k-means|| centres equals the single-machine Lloyd.
    single = KMeans(5, init=a.cluster_centers_, n_init=1).fit(X)
    np.testing.assert_array_equal(single.labels_, labels)


def test_kmeans_bad_params(client):
    X = darray(blobs(0, n=100))
    with pytest.raises(ValueError, match="k-means\\+\\+ is sequential"):
        fd.KMeans(3, init="k-means++").fit(X)
    with pytest.raises(ValueError, match="n_samples=100 should be >= n_clusters=200"):
        fd.KMeans(200).fit(X)
    with pytest.raises(ValueError, match="init has shape"):
        fd.KMeans(3, init=np.zeros((2, 5))).fit(X)


# --------------------------------------------------------- IsolationForest


def test_iforest_equals_single_machine_when_the_sample_is_all_rows(client, data_dir):
    X = np.load(data_dir / "odds" / "cardio.npz")["X"].astype(np.float64)
    want = IsolationForest(n_estimators=50, contamination=0.1, random_state=0).fit(X)
    got = fd.IsolationForest(n_estimators=50, contamination=0.1, random_state=0).fit(darray(X))
    np.testing.assert_array_equal(got.tree_threshold_, want.tree_threshold_)
    assert got.offset_ == want.offset_
    np.testing.assert_array_equal(got.score_samples(darray(X)).compute(), want.score_samples(X))
    np.testing.assert_array_equal(got.predict(darray(X)).compute(), want.predict(X))


def test_iforest_sample_fit_and_scoring(client):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(6000, 4))
    X[:30] += 6
    got = fd.IsolationForest(n_estimators=10, max_samples=64, contamination=0.02, random_state=1).fit(darray(X))
    assert got.max_samples_ == 64 and got.n_samples_fit_ == 6000
    scores = got.score_samples(darray(X)).compute()
    # The same trees scored on one machine; offset_ is the exact percentile.
    np.testing.assert_array_equal(scores, IsolationForest.score_samples(got, X))
    assert got.offset_ == np.percentile(scores, 2.0)
    assert np.mean(got.predict(darray(X)).compute()[:30] == -1) > 0.9
    # A fitted single-machine model scores a dask array chunk by chunk.
    model = IsolationForest(n_estimators=20, random_state=0).fit(X)
    np.testing.assert_array_equal(fd.map_scores(model, darray(X)).compute(), model.score_samples(X))
    np.testing.assert_array_equal(fd.map_scores(model, darray(X), "decision_function").compute(), model.decision_function(X))


def test_iforest_bad_input(client):
    X = darray(np.ones((50, 2)))
    with pytest.raises(ValueError, match="sample_weight is not supported"):
        fd.IsolationForest().fit(X, sample_weight=np.ones(50))
    with pytest.raises(ValueError, match="method must be"):
        fd.map_scores(IsolationForest().fit(np.ones((5, 2))), X, "fit")


# -------------------------------------------------------- frequent itemsets


def as_dict(frame) -> dict:
    return dict(zip(frame["itemsets"], frame["support"]))


def fimi_lists(data_dir, name):
    return [list(t) for t in read_transactions(data_dir / "fimi" / name).to_pylist()]


@pytest.mark.parametrize("name,min_support,mine,fn", [("mushroom.dat", 0.4, fd.fpmax, fpmax), ("chess.dat", 0.9, fd.fpclosed, fpclosed)])
def test_fpgrowth_fimi_equals_single_machine(client, data_dir, name, min_support, mine, fn):
    rows = fimi_lists(data_dir, name)
    bag = dbag(rows).persist()
    want = fn(rows, min_support=min_support, use_colnames=True)
    got = mine(bag, min_support=min_support, use_colnames=True)
    assert len(got) == len(want) > 0
    assert as_dict(got) == as_dict(want)
    want = fpgrowth(rows, min_support=min_support, use_colnames=True)
    got = fd.fpgrowth(bag, min_support=min_support, use_colnames=True)
    assert len(got) == len(want) and as_dict(got) == as_dict(want)
    rules_w = association_rules(want, len(rows), min_threshold=0.9)
    rules_g = fd.association_rules(got, len(rows), min_threshold=0.9)
    key = ["antecedents", "consequents"]
    pd.testing.assert_frame_equal(
        rules_g.sort_values(key, key=lambda s: s.map(sorted).map(str)).reset_index(drop=True),
        rules_w.sort_values(key, key=lambda s: s.map(sorted).map(str)).reset_index(drop=True),
    )


def test_fpgrowth_generated_inputs(client):
    rng = np.random.default_rng(0)
    items = list("abcdefghij")
    rows = [list(rng.choice(items, rng.integers(0, 6), replace=False)) for _ in range(800)]
    bag = dbag(rows).persist()
    cases = ((0.05, 2, fd.fpclosed, fpclosed), (7, None, fd.fpmax, fpmax), (0.02, 3, fd.fpgrowth, fpgrowth))
    for min_support, max_len, mine, fn in cases:
        want = fn(rows, min_support=min_support, max_len=max_len)
        got = mine(bag, min_support=min_support, max_len=max_len)
        assert len(got) == len(want)
        assert as_dict(got) == as_dict(want)
    assert len(want) > 100
    assert fd.fpgrowth(bag, min_support=0.02, max_len=3, output="count") == len(want)
    # One-hot frame, one list column, arrow output.
    onehot = pd.DataFrame({c: [c in r for r in rows] for c in items})
    want = fpgrowth(onehot, min_support=0.05, use_colnames=True)
    assert as_dict(fd.fpgrowth(dframe(onehot), min_support=0.05, use_colnames=True)) == as_dict(want)
    import pyarrow as pa

    lists = pd.DataFrame({"items": pd.Series([[str(i) for i in r] for r in rows], dtype=pd.ArrowDtype(pa.list_(pa.string())))})
    assert as_dict(fd.fpgrowth(dframe(lists), min_support=0.05, use_colnames=True)) == as_dict(want)
    # dask turns an object column of lists into strings: refused, not mined as characters.
    with pytest.raises(TypeError, match="got a string"):
        fd.fpgrowth(dframe(pd.DataFrame({"items": ["ab", "b"] * 5})), min_support=0.5)
    table = fd.fpgrowth(dframe(onehot), min_support=0.05, use_colnames=True, output="arrow")
    assert {frozenset(s): v for s, v in zip(table["itemsets"].to_pylist(), table["support"].to_pylist())} == as_dict(want)


def test_count_itemsets_kernel_and_errors():
    indptr = np.array([0, 2, 3, 3], dtype=np.int64)
    indices = np.array([0, 1, 1], dtype=np.int64)
    offsets = np.array([0, 1, 2, 4, 4], dtype=np.uint64)
    items = np.array([0, 1, 0, 1], dtype=np.uint32)
    np.testing.assert_array_equal(_core.fp_count_itemsets(indptr, indices, 2, offsets, items), [1, 2, 1, 3])
    with pytest.raises(ValueError, match="candidate item ids must be in"):
        _core.fp_count_itemsets(indptr, indices, 2, offsets, np.array([0, 5, 0, 1], dtype=np.uint32))
    with pytest.raises(ValueError, match="must start at 0"):
        _core.fp_count_itemsets(indptr, indices, 2, offsets + np.uint64(1), items)


def test_fpgrowth_bad_params(client):
    with pytest.raises(ValueError, match="output must be"):
        fd.fpgrowth(dbag([["a"]] * 10), output="csv")
    with pytest.raises(ValueError, match="min_support"):
        fd.fpgrowth(dbag([["a"]] * 10), min_support=1.5)
