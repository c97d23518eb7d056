# Hand-written stubs for the compiled module ferromine._core (checked by
# `python -m mypy.stubtest ferromine._core` in the test suite).
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__version__: str
__all__ = [
    "_panic_in_kernel",
    "_reset_pools",
    "get_num_threads",
    "arrow_columns",
    "psi_extents",
    "psi_histograms",
    "psi_quantiles",
    "__version__",
]

_Numeric = (
    npt.NDArray[np.float64]
    | npt.NDArray[np.float32]
    | list[list[npt.NDArray[np.float64]]]
    | list[list[npt.NDArray[np.float32]]]
)

def get_num_threads() -> int: ...
def _reset_pools() -> None: ...
def _panic_in_kernel() -> None: ...
def arrow_columns(
    data: Any,
) -> list[tuple[str, Literal["float", "float-converted", "category", "bool"], Any]]: ...
def psi_quantiles(
    data: _Numeric, probabilities: list[float] | npt.NDArray[np.float64], n_threads: int | None = None
) -> tuple[
    npt.NDArray[np.float64], npt.NDArray[np.uint64], npt.NDArray[np.uint64], npt.NDArray[np.uint64]
]: ...
def psi_extents(
    data: _Numeric, n_threads: int | None = None
) -> tuple[
    npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.uint64], npt.NDArray[np.uint64]
]: ...
def psi_histograms(
    data: _Numeric,
    cuts: list[npt.NDArray[np.float64]],
    right: bool = True,
    n_threads: int | None = None,
) -> tuple[list[npt.NDArray[np.uint64]], npt.NDArray[np.uint64]]: ...
