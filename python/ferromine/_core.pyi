# Hand-written stubs for the compiled module ferromine._core (checked by
# `python -m mypy.stubtest ferromine._core` in the test suite).
from typing import Any, Literal, final

import numpy as np
import numpy.typing as npt

__version__: str
__all__ = [
    "_panic_in_kernel",
    "_reset_pools",
    "get_num_threads",
    "fp_count_itemsets",
    "fp_csr_of_dense",
    "fp_frozensets",
    "fp_make_transactions",
    "fp_mine",
    "fp_rules",
    "iforest_contributions",
    "iforest_grow",
    "iforest_grow_extended",
    "iforest_score",
    "PackedForest",
    "iforest_score_extended",
    "arrow_columns",
    "kmeans_assign",
    "kmeans_column_stats",
    "kmeans_label_distances",
    "kmeans_lloyd",
    "kmeans_lloyd_step",
    "kmeans_parallel",
    "kmeans_plusplus",
    "kmeans_transform",
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

# k-means (ferromine.kmeans)
_Dense = npt.NDArray[np.float64] | npt.NDArray[np.float32]
# X: dense, or CSR as (data, indices int64, indptr int64, n_features).
_X = _Dense | tuple[_Dense, npt.NDArray[np.int64], npt.NDArray[np.int64], int]

def kmeans_lloyd(
    x: _X,
    sample_weight: npt.NDArray[np.float64] | None,
    init: _Dense,
    shift: npt.NDArray[np.float64],
    max_iter: int,
    tol: float,
    n_threads: int | None = None,
    bounded: bool = False,
) -> tuple[_Dense, npt.NDArray[np.int32], float, int, bool]: ...
def kmeans_parallel(
    x: _X,
    sample_weight: npt.NDArray[np.float64] | None,
    n_clusters: int,
    rounds: int,
    oversampling: float,
    shift: npt.NDArray[np.float64],
    seed: int,
    stream: int = 0,
    n_threads: int | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]: ...
def kmeans_plusplus(
    x: _X,
    sample_weight: npt.NDArray[np.float64] | None,
    n_clusters: int,
    n_trials: int,
    shift: npt.NDArray[np.float64],
    seed: int,
    stream: int = 0,
    n_threads: int | None = None,
) -> npt.NDArray[np.int64]: ...
def kmeans_assign(
    x: _X,
    centers: _Dense,
    sample_weight: npt.NDArray[np.float64] | None = None,
    with_inertia: bool = True,
    n_threads: int | None = None,
) -> tuple[npt.NDArray[np.int32], float]: ...
def kmeans_transform(x: _X, centers: _Dense, n_threads: int | None = None) -> _Dense: ...
def kmeans_column_stats(
    x: _X, n_threads: int | None = None, with_var: bool = True
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
def kmeans_lloyd_step(
    x: _X,
    sample_weight: npt.NDArray[np.float64] | None,
    centers: npt.NDArray[np.float64],
    shift: npt.NDArray[np.float64],
    n_threads: int | None = None,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
def kmeans_label_distances(
    x: _X,
    centers: npt.NDArray[np.float64],
    shift: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int32],
    n_threads: int | None = None,
) -> npt.NDArray[np.float64]: ...

# --- isolation forest (ferromine.iforest) ---
_Matrix = npt.NDArray[np.float64] | npt.NDArray[np.float32]
# (data, indices, indptr, n_features) of a CSR matrix; indices and indptr share a dtype.
_CsrTuple = tuple[
    npt.NDArray[np.float64] | npt.NDArray[np.float32],
    npt.NDArray[np.int32] | npt.NDArray[np.int64],
    npt.NDArray[np.int32] | npt.NDArray[np.int64],
    int,
]

def iforest_grow(
    x: _Matrix | _CsrTuple,
    seed: int,
    first_tree: int,
    n_trees: int,
    max_samples: int,
    max_features: int,
    bootstrap: bool,
    max_depth: int,
    sample_weight: npt.NDArray[np.float64] | None = None,
    n_threads: int | None = None,
) -> tuple[
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.int32],
    npt.NDArray[np.float64],
    npt.NDArray[np.int32],
    npt.NDArray[np.int32],
    npt.NDArray[np.uint8],
    npt.NDArray[np.int64],
    npt.NDArray[np.float64],
]: ...
@final
class PackedForest:
    """A fitted forest checked and laid out for scoring."""

    def __new__(
        cls,
        offsets: npt.NDArray[np.int64],
        feature: npt.NDArray[np.int32],
        threshold: npt.NDArray[np.float64],
        children_left: npt.NDArray[np.int32],
        children_right: npt.NDArray[np.int32],
        missing_go_to_left: npt.NDArray[np.uint8],
        value: npt.NDArray[np.float64],
        n_features: int,
    ) -> PackedForest: ...
    @property
    def n_trees(self) -> int: ...
    @property
    def n_features(self) -> int: ...

def iforest_score(
    x: _Matrix | _CsrTuple,
    forest: PackedForest,
    max_samples: int,
    n_threads: int | None = None,
) -> npt.NDArray[np.float64]: ...
def iforest_grow_extended(
    x: _Matrix | _CsrTuple,
    seed: int,
    first_tree: int,
    n_trees: int,
    max_samples: int,
    max_features: int,
    bootstrap: bool,
    max_depth: int,
    extension_level: int,
    sample_weight: npt.NDArray[np.float64] | None = None,
    n_threads: int | None = None,
) -> tuple[tuple[npt.NDArray[Any], ...], npt.NDArray[np.int32], npt.NDArray[np.float64]]: ...
def iforest_score_extended(
    x: _Matrix | _CsrTuple,
    offsets: npt.NDArray[np.int64],
    feature: npt.NDArray[np.int32],
    threshold: npt.NDArray[np.float64],
    children_left: npt.NDArray[np.int32],
    children_right: npt.NDArray[np.int32],
    missing_go_to_left: npt.NDArray[np.uint8],
    value: npt.NDArray[np.float64],
    hyper_features: npt.NDArray[np.int32],
    hyper_coefs: npt.NDArray[np.float64],
    extension_level: int,
    max_samples: int,
    n_threads: int | None = None,
) -> npt.NDArray[np.float64]: ...
def iforest_contributions(
    x: _Matrix | _CsrTuple,
    offsets: npt.NDArray[np.int64],
    feature: npt.NDArray[np.int32],
    threshold: npt.NDArray[np.float64],
    children_left: npt.NDArray[np.int32],
    children_right: npt.NDArray[np.int32],
    missing_go_to_left: npt.NDArray[np.uint8],
    value: npt.NDArray[np.float64],
    n_node_samples: npt.NDArray[np.int64],
    n_threads: int | None = None,
) -> npt.NDArray[np.float64]: ...

# --- frequent itemsets (ferromine.fpgrowth) ---
_Ids = npt.NDArray[np.int32] | npt.NDArray[np.int64] | npt.NDArray[np.uint32] | npt.NDArray[np.uint64]

def fp_mine(
    indptr: _Ids,
    indices: _Ids,
    n_items: int,
    min_count: int,
    kind: str = "all",
    max_len: int | None = None,
    max_itemsets: int | None = None,
    count_only: bool = False,
    n_threads: int | None = None,
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint32], npt.NDArray[np.uint64], int]: ...
def fp_count_itemsets(
    indptr: _Ids,
    indices: _Ids,
    n_items: int,
    offsets: npt.NDArray[np.uint64],
    items: npt.NDArray[np.uint32],
    n_threads: int | None = None,
) -> npt.NDArray[np.uint64]: ...
def fp_csr_of_dense(
    data: npt.NDArray[np.uint8], transposed: bool = False
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint32]]: ...
def fp_frozensets(
    offsets: npt.NDArray[np.uint64], items: npt.NDArray[np.uint32], labels: list[Any] | None = None
) -> npt.NDArray[np.object_]: ...
def fp_make_transactions(
    n_transactions: int,
    n_items: int,
    avg_len: float,
    n_patterns: int,
    avg_pattern_len: float,
    correlation: float,
    corruption: float,
    seed: int,
    n_threads: int | None = None,
) -> tuple[
    npt.NDArray[np.int64],
    npt.NDArray[np.int32],
    npt.NDArray[np.int64],
    npt.NDArray[np.int32],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
]: ...
def fp_rules(
    offsets: npt.NDArray[np.uint64],
    items: npt.NDArray[np.uint32],
    supports: npt.NDArray[np.float64],
    metric: int,
    min_threshold: float,
    support_only: bool = False,
    max_antecedent_len: int | None = None,
    max_consequent_len: int | None = None,
    num_itemsets: float = 1.0,
    max_rules: int | None = None,
    count_only: bool = False,
    n_threads: int | None = None,
) -> tuple[
    npt.NDArray[np.uint64],
    npt.NDArray[np.uint32],
    npt.NDArray[np.uint64],
    npt.NDArray[np.uint32],
    npt.NDArray[np.float64],
    int,
]: ...
