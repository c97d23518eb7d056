"""MiniBatchKMeans against scikit-learn's: same rows drawn from an int
random_state, so from an explicit init the fits must agree."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.cluster import MiniBatchKMeans as SKMiniBatchKMeans
from sklearn.datasets import load_digits, make_blobs
from sklearn.utils.estimator_checks import parametrize_with_checks

from ferromine.cluster import KMeans, MiniBatchKMeans


def _init_rows(X, k, seed):
    return X[np.random.RandomState(seed).choice(len(X), k, replace=False)].copy()


def _pair(X, init, sample_weight=None, **kw):
    params = dict(n_clusters=len(init), init=init, random_state=3, **kw)
    ref = SKMiniBatchKMeans(**params).fit(X, sample_weight=sample_weight)
    ours = MiniBatchKMeans(**params).fit(X, sample_weight=sample_weight)
    return ours, ref


def _assert_same(ours, ref, X, labels=True):
    scale = np.abs(ref.cluster_centers_).max()
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-6, atol=1e-6 * scale)
    assert ours.cluster_centers_.dtype == X.dtype
    assert ours.n_steps_ == ref.n_steps_
    assert ours.n_iter_ == ref.n_iter_
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-9)
    if labels:
        np.testing.assert_array_equal(ours.labels_, ref.labels_)
        assert ours.labels_.dtype == np.int32


@pytest.fixture(scope="module")
def blobs():
    X, _ = make_blobs(6000, n_features=6, centers=9, cluster_std=2.0, random_state=0)
    return X


@pytest.mark.parametrize(
    "kw",
    [
        {},  # EWA-inertia stopping (max_no_improvement=10)
        {"tol": 1e-3},  # centre-change stopping
        {"max_no_improvement": None, "max_iter": 3},  # runs all steps
        {"batch_size": 64, "reassignment_ratio": 0.3},  # many reassignments
        {"compute_labels": False},  # inertia_ from the EWA
    ],
)
def test_matches_sklearn_from_explicit_init(blobs, kw):
    ours, ref = _pair(blobs, _init_rows(blobs, 9, 0), **kw)
    _assert_same(ours, ref, blobs, labels=kw.get("compute_labels", True))


def test_matches_sklearn_with_sample_weight_and_digits():
    X = load_digits().data
    w = np.random.RandomState(0).uniform(0, 2, len(X))
    w[::5] = 0.0
    ours, ref = _pair(X, _init_rows(X, 10, 1), sample_weight=w, batch_size=200, max_no_improvement=None, max_iter=4)
    _assert_same(ours, ref, X)


def test_empty_centres_are_reassigned_as_sklearn(blobs):
    init = _init_rows(blobs, 9, 2)
    init[[1, 5]] = 1e4  # never closest: counts stay 0 and force reassignment
    ours, ref = _pair(blobs, init, batch_size=100, max_no_improvement=None, max_iter=2)
    _assert_same(ours, ref, blobs)
    assert np.abs(ours.cluster_centers_).max() < 1e3


def test_inertia_close_to_sklearn_over_seeds(blobs):
    # Stochastic: compare medians over seeds (a single seed can merge blobs).
    ref = np.median([SKMiniBatchKMeans(9, random_state=s, n_init=3).fit(blobs).inertia_ for s in range(6)])
    ours = np.median([MiniBatchKMeans(9, random_state=s, n_init=3).fit(blobs).inertia_ for s in range(6)])
    assert ours == pytest.approx(ref, rel=0.03)
    full = KMeans(9, random_state=0, n_init=3).fit(blobs).inertia_
    assert ours <= full * 1.05


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_n_jobs_bit_identical(blobs, dtype):
    X = blobs.astype(dtype)
    fits = [MiniBatchKMeans(9, random_state=5, n_init=2, init="random", n_jobs=j).fit(X) for j in (1, 2)]
    a, b = fits
    assert a.cluster_centers_.dtype == dtype
    assert a.cluster_centers_.tobytes() == b.cluster_centers_.tobytes()
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.inertia_ == b.inertia_ and a.n_steps_ == b.n_steps_
    parts = []
    for j in (1, 2):
        m = MiniBatchKMeans(9, random_state=5, n_jobs=j)
        for chunk in np.array_split(X, 10):
            m.partial_fit(chunk)
        parts.append(m)
    assert parts[0].cluster_centers_.tobytes() == parts[1].cluster_centers_.tobytes()


def test_partial_fit_over_batches(blobs):
    rng = np.random.RandomState(0)
    X = blobs[rng.permutation(len(blobs))]
    m = MiniBatchKMeans(9, random_state=0)
    for epoch in range(3):
        for chunk in np.array_split(X, 30):
            m.partial_fit(chunk)
            # labels_/inertia_ describe the last batch
            assert m.labels_.shape == (len(chunk),)
    assert m.n_steps_ == 90
    assert m.n_features_in_ == X.shape[1]
    full = KMeans(9, random_state=0, n_init=3).fit(X)
    assert -m.score(X) <= full.inertia_ * 1.1
    np.testing.assert_array_equal(m.predict(X[:500]), ((X[:500, None] - m.cluster_centers_[None]) ** 2).sum(-1).argmin(1))
    # Same batches, same seed: same result; pickled state continues identically.
    m2 = MiniBatchKMeans(9, random_state=0)
    for chunk in np.array_split(X, 30):
        m2.partial_fit(chunk)
    m3 = pickle.loads(pickle.dumps(m2))
    for chunk in np.array_split(X, 30)[:5]:
        m2.partial_fit(chunk)
        m3.partial_fit(chunk)
    assert m2.cluster_centers_.tobytes() == m3.cluster_centers_.tobytes()


def test_partial_fit_continues_a_fit_and_checks_features(blobs):
    m = MiniBatchKMeans(9, random_state=0, max_iter=2).fit(blobs)
    steps = m.n_steps_
    m.partial_fit(blobs[:300])
    assert m.n_steps_ == steps + 1
    with pytest.raises(ValueError, match="features"):
        m.partial_fit(blobs[:300, :3])


def test_partial_fit_matches_sklearn_from_explicit_init(blobs):
    # Without reassignment the update is RNG-free, so it must equal sklearn's.
    init = _init_rows(blobs, 9, 4)
    ours = MiniBatchKMeans(9, init=init, reassignment_ratio=0.0)
    ref = SKMiniBatchKMeans(9, init=init, reassignment_ratio=0.0)
    w = np.random.RandomState(1).uniform(0.5, 2, len(blobs))
    for idx in np.array_split(np.arange(len(blobs)), 12):
        ours.partial_fit(blobs[idx], sample_weight=w[idx])
        ref.partial_fit(blobs[idx], sample_weight=w[idx])
        np.testing.assert_array_equal(ours.labels_, ref.labels_)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-9, atol=1e-9)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-9)


def test_float32_kept(blobs):
    X = blobs.astype(np.float32)
    m = MiniBatchKMeans(9, random_state=0).fit(X)
    assert m.cluster_centers_.dtype == np.float32
    assert m.transform(X).dtype == np.float32
    ours64 = MiniBatchKMeans(9, init=_init_rows(blobs, 9, 0), random_state=3).fit(blobs)
    ours32 = MiniBatchKMeans(9, init=_init_rows(blobs, 9, 0).astype(np.float32), random_state=3).fit(X)
    np.testing.assert_allclose(ours32.cluster_centers_, ours64.cluster_centers_, rtol=1e-3, atol=1e-3)


def test_small_init_size_warns(blobs):
    with pytest.warns(RuntimeWarning, match="init_size=3 should be larger than n_clusters=9"):
        MiniBatchKMeans(9, init_size=3, random_state=0, max_iter=1).fit(blobs)


@pytest.mark.parametrize(
    "params, exc",
    [
        ({"batch_size": 0}, ValueError),
        ({"batch_size": 1.5}, TypeError),
        ({"max_no_improvement": -1}, ValueError),
        ({"init_size": 0}, ValueError),
        ({"reassignment_ratio": -0.1}, ValueError),
        ({"reassignment_ratio": "a"}, TypeError),
        ({"compute_labels": "yes"}, TypeError),
        ({"n_clusters": 0}, ValueError),
        ({"n_init": 0}, ValueError),
        ({"tol": -1.0}, ValueError),
        ({"init": "kmeans"}, ValueError),
        ({"n_jobs": 0}, ValueError),
    ],
)
def test_bad_parameters(params, exc):
    X, _ = make_blobs(50, n_features=2, random_state=0)
    with pytest.raises(exc):
        MiniBatchKMeans(**params).fit(X)
    with pytest.raises(exc):
        MiniBatchKMeans(**params).partial_fit(X)


def test_bad_input():
    with pytest.raises(ValueError, match="Input X contains NaN"):
        MiniBatchKMeans(2).fit(np.array([[0.0, np.nan], [1.0, 1.0], [2.0, 2.0]]))
    with pytest.raises(ValueError, match=r"n_samples=3 should be >= n_clusters=4\."):
        MiniBatchKMeans(4).fit(np.arange(6.0).reshape(3, 2))
    with pytest.raises(ValueError, match=r"n_samples=3 should be >= n_clusters=4\."):
        MiniBatchKMeans(4).partial_fit(np.arange(6.0).reshape(3, 2))
    with pytest.raises(ValueError, match="Expected 2D array"):
        MiniBatchKMeans(2).fit(np.arange(10.0))
    with pytest.raises(ValueError, match="does not match the number of clusters 2"):
        MiniBatchKMeans(2, init=np.zeros((3, 2))).fit(np.ones((10, 2)))
    with pytest.raises(ValueError, match="sample_weight.shape"):
        MiniBatchKMeans(2).fit(np.ones((10, 2)), sample_weight=np.ones(3))


def test_feature_names_out():
    X, _ = make_blobs(100, n_features=3, centers=2, random_state=0)
    m = MiniBatchKMeans(2, random_state=0).fit(X)
    assert list(m.get_feature_names_out()) == ["minibatchkmeans0", "minibatchkmeans1"]


def _expected_failed_checks(estimator):
    # sklearn's own list for MiniBatchKMeans (PER_ESTIMATOR_XFAIL_CHECKS).
    reason = "sample_weight is not equivalent to removing/repeating samples."
    return {
        "check_sample_weight_equivalence_on_dense_data": reason,
        "check_sample_weight_equivalence_on_sparse_data": reason,
    }


@parametrize_with_checks(
    [MiniBatchKMeans(n_clusters=2, n_init=2, max_iter=5, batch_size=10, random_state=0)],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_kmeans_parallel_init(blobs):
    a = MiniBatchKMeans(9, init="k-means||", random_state=0, n_jobs=1).fit(blobs)
    b = MiniBatchKMeans(9, init="k-means||", random_state=0, n_jobs=2).fit(blobs)
    assert a.cluster_centers_.tobytes() == b.cluster_centers_.tobytes()
    ref = np.median([SKMiniBatchKMeans(9, random_state=s, n_init=3).fit(blobs).inertia_ for s in range(3)])
    assert a.inertia_ <= ref * 1.05
