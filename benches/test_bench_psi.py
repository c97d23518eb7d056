"""PSI cases for regression tracking with pytest-benchmark (not part of make test):

    .venv/bin/python -m pytest benches/ --benchmark-only
"""

import numpy as np
import pytest

from ferromine.drift import PSIDrift

SHAPES = [(200_000, 20), (1_000_000, 100)]


@pytest.fixture(scope="module", params=SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def data(request):
    n, d = request.param
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, d)), rng.standard_normal((n, d)) + 0.1


def test_fit(benchmark, data):
    ref, _ = data
    benchmark(lambda: PSIDrift().fit(ref))


def test_score(benchmark, data):
    ref, cur = data
    est = PSIDrift().fit(ref)
    benchmark(lambda: est.psi(cur))
