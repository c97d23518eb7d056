"""ferromine on Dask: every kernel runs per partition and merges partial states.

Install with the ``dask`` extra (``pip install ferromine[dask]``). Nothing here
schedules work itself: each function maps the single-machine Rust kernels over
the partitions of a dask collection and reduces their small partial states on
the client, on whatever scheduler dask uses (a ``distributed.Client`` if one is
active). See ``docs/scale-out.md`` for how each kernel is distributed and what
it costs.

- :func:`psi` (and :func:`fit_reference` / :func:`compare`): PSI drift, exact
  quantile edges by default.
- :class:`KMeans`: k-means|| and Lloyd on dask arrays.
- :class:`IsolationForest`: fit on a uniform sample, score per partition;
  :func:`map_scores` scores a dask array with any fitted single-machine model.
- :func:`fpgrowth`, :func:`fpclosed`, :func:`fpmax`: SON two-pass mining;
  :func:`association_rules`.
"""

from ._fpgrowth import association_rules, fpclosed, fpgrowth, fpmax
from ._iforest import IsolationForest, distributed_percentile, map_scores
from ._kmeans import KMeans
from ._psi import compare, fit_reference, psi

__all__ = [
    "IsolationForest",
    "KMeans",
    "association_rules",
    "compare",
    "distributed_percentile",
    "fit_reference",
    "fpclosed",
    "fpgrowth",
    "fpmax",
    "map_scores",
    "psi",
]
