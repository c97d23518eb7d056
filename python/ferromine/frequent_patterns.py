"""Frequent itemsets and association rules, mlxtend-compatible.

Switch from mlxtend by changing one import::

    from ferromine.frequent_patterns import fpgrowth, fpmax, association_rules

Also :func:`fpclosed` (closed itemsets), columnar outputs (``output="arrow"``,
``"polars"``, ``"count"``), :func:`read_transactions` for FIMI ``.dat`` files,
:class:`TransactionEncoder` and the :class:`FPGrowth` estimator.
"""

from .fpgrowth import (
    METRICS,
    FPGrowth,
    TransactionEncoder,
    association_rules,
    fpclosed,
    fpgrowth,
    fpmax,
    read_transactions,
)

__all__ = [
    "METRICS",
    "FPGrowth",
    "TransactionEncoder",
    "association_rules",
    "fpclosed",
    "fpgrowth",
    "fpmax",
    "read_transactions",
]
