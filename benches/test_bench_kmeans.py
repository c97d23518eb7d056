"""k-means cases for regression tracking with pytest-benchmark (not part of make test):

    .venv/bin/python -m pytest benches/ --benchmark-only
"""

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from ferromine.cluster import KMeans, kmeans_plusplus

CASES = [(100_000, 16, 8), (100_000, 64, 64), (100_000, 16, 256)]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"n{c[0]}-d{c[1]}-k{c[2]}")
def blobs(request):
    n, d, k = request.param
    X, _ = make_blobs(n, n_features=d, centers=k, cluster_std=4.0, random_state=0)
    X = X.astype(np.float32)
    init = X[np.random.RandomState(0).choice(n, k, replace=False)].copy()
    return X, init


def test_lloyd_20_iterations(benchmark, blobs):
    X, init = blobs
    km = benchmark(lambda: KMeans(len(init), init=init, n_init=1, tol=0.0, max_iter=20).fit(X))
    assert km.n_iter_ <= 20


def test_kmeans_plusplus(benchmark, blobs):
    X, init = blobs
    centers, _ = benchmark(lambda: kmeans_plusplus(X, len(init), random_state=0))
    assert centers.shape == init.shape
