import os
from pathlib import Path

# scikit-learn runs its array-API estimator check only with this set (before
# scipy is first imported).
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("FERROMINE_DATA", REPO.parent / "shared" / "data"))

settings.register_profile(
    "ferromine",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.load_profile("ferromine")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"shared benchmark data not found at {DATA} (set FERROMINE_DATA)")
    return DATA
