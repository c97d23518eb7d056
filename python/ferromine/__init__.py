"""ferromine: fast, exact data-mining kernels in Rust with scikit-learn and mlxtend APIs.

Public modules: :mod:`ferromine.drift` (PSI). Kernels run on ferromine's own
thread pools; see :func:`ferromine.get_num_threads` and ``n_jobs``.
"""

from . import _threads  # noqa: F401  (registers the threadpoolctl controller)
from ._core import __version__, get_num_threads

__all__ = ["__version__", "get_num_threads"]
