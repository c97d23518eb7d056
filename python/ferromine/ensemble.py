"""Ensemble methods: :class:`IsolationForest` (scikit-learn compatible)."""

from .iforest import IsolationForest

__all__ = ["IsolationForest"]
