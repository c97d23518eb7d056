"""Drift detection: the Population Stability Index (PSI) per feature.

>>> from ferromine.drift import PSIDrift, psi
"""

from .psi import DriftReport, PSIAccumulator, PSIDrift, psi, severity

__all__ = ["PSIDrift", "PSIAccumulator", "DriftReport", "psi", "severity"]
