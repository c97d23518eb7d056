"""Clustering: :class:`KMeans`, :class:`MiniBatchKMeans` and :func:`kmeans_plusplus`, drop-ins for scikit-learn's."""

from .kmeans import KMeans, MiniBatchKMeans, kmeans_plusplus

__all__ = ["KMeans", "MiniBatchKMeans", "kmeans_plusplus"]
