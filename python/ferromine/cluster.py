"""Clustering: :class:`KMeans` and :func:`kmeans_plusplus`, drop-ins for scikit-learn's."""

from .kmeans import KMeans, kmeans_plusplus

__all__ = ["KMeans", "kmeans_plusplus"]
