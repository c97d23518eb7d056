"""Isolation forest cases for regression tracking with pytest-benchmark (not part of make test):

    .venv/bin/python -m pytest benches/ --benchmark-only
"""

import numpy as np
import pytest

from ferromine.ensemble import IsolationForest

SHAPES = [(100_000, 10), (1_000_000, 10)]


@pytest.fixture(scope="module", params=SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def data(request):
    n, d = request.param
    return np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)


def test_fit(benchmark, data):
    benchmark(lambda: IsolationForest(random_state=0).fit(data))


def test_score(benchmark, data):
    est = IsolationForest(random_state=0).fit(data)
    scores = benchmark(lambda: est.score_samples(data))
    assert scores.shape == (len(data),)
