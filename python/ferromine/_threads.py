"""Thread counts: ``n_jobs`` resolution and the threadpoolctl controller.

ferromine runs its kernels on its own Rust thread pools (never rayon's global
pool). ``n_jobs`` resolves as scikit-learn's OpenMP helpers do, so a Dask
worker or a joblib child that sets ``OMP_NUM_THREADS=1`` also limits us, and
``threadpoolctl.threadpool_limits(limits=1)`` caps every call through the
controller registered here.
"""

from __future__ import annotations

import functools
import numbers
import os

import threadpoolctl

from . import _core

__all__ = ["resolve_n_jobs"]


def _env_threads() -> int | None:
    for var in ("FERROMINE_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").split(",")[0].strip()
        if value:
            try:
                n = int(value)
            except ValueError:
                continue
            if n > 0:
                return n
    return None


@functools.lru_cache(maxsize=1)
def _cpu_count() -> int:
    # Cached: joblib takes about a millisecond per call (cgroup files,
    # affinity), which small scoring batches would pay on every call.
    import joblib

    return max(1, joblib.cpu_count(only_physical_cores=True))


def resolve_n_jobs(n_jobs: int | None) -> int:
    """Turn an ``n_jobs`` parameter into a thread count (>= 1).

    ``None``: ``FERROMINE_NUM_THREADS``, else ``OMP_NUM_THREADS`` (first value
    of a list), else the number of physical cores (cgroup-aware). ``-1``: all
    cores; ``-k``: all but ``k - 1``. ``0`` is an error. threadpoolctl's limit,
    if any, caps the result inside the extension.
    """
    if n_jobs is None:
        env = _env_threads()
        return env if env is not None else _cpu_count()
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral):
        raise TypeError(f"n_jobs must be None or an int, got {n_jobs!r}")
    n_jobs = int(n_jobs)
    if n_jobs == 0:
        raise ValueError("n_jobs=0 means no threads; use None, -1 (all cores) or a positive count")
    if n_jobs < 0:
        return max(1, _cpu_count() + 1 + n_jobs)
    return n_jobs


class _FerromineController(threadpoolctl.LibController):
    """Lets ``threadpoolctl.threadpool_limits`` see and cap ferromine's pools."""

    user_api = "ferromine"
    internal_api = "ferromine"
    filename_prefixes = ("_core",)
    # Other packages also ship a ``_core`` module: only ours has these symbols.
    check_symbols = ("ferromine_get_num_threads", "ferromine_set_num_threads")

    def get_num_threads(self):
        return self.dynlib.ferromine_get_num_threads()

    def set_num_threads(self, num_threads):
        self.dynlib.ferromine_set_num_threads(num_threads)

    def get_version(self):
        return _core.__version__


threadpoolctl.register(_FerromineController)

# A forked child must not touch pools whose threads stayed in the parent.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_core._reset_pools)
