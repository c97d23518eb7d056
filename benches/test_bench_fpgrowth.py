"""FP-Growth cases for regression tracking with pytest-benchmark (not part of make test):

    .venv/bin/python -m pytest benches/ --benchmark-only
"""

import os
from pathlib import Path

import pytest

from ferromine.frequent_patterns import fpgrowth, read_transactions

DATA = Path(os.environ.get("FERROMINE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "fimi"
CASES = [("chess.dat", 0.7), ("mushroom.dat", 0.1), ("retail.dat.gz", 0.001), ("T10I4D100K.dat.gz", 0.001)]


@pytest.mark.skipif(not DATA.is_dir(), reason=f"FIMI data not found at {DATA} (set FERROMINE_DATA)")
@pytest.mark.parametrize("name,min_support", CASES, ids=[f"{c[0].split('.')[0]}-{c[1]}" for c in CASES])
@pytest.mark.parametrize("output", ["arrow", "count"])
def test_fpgrowth(benchmark, name, min_support, output):
    tx = read_transactions(DATA / name)
    result = benchmark(lambda: fpgrowth(tx, min_support, output=output, max_itemsets=None))
    assert (result if output == "count" else len(result)) > 0
