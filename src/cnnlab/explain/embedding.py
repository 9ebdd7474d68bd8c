"""The penultimate layer's features of a dataset split, mapped to 2-D (t-SNE or PCA)."""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from ..base.errors import unknown
from ..run.inference import penultimate_features

__all__ = ["penultimate_features", "project"]


def project(features: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """(N, F) -> (N, 2) with scikit-learn's t-SNE (after PCA to 50 dims, as its docs advise) or PCA."""
    if method not in ("tsne", "pca"):
        raise unknown("projection", method, ("tsne", "pca"))
    if method == "pca" or len(features) < 5:
        return PCA(n_components=2, random_state=seed).fit_transform(features)
    reduced = PCA(n_components=min(50, *features.shape), random_state=seed).fit_transform(features)
    perplexity = min(30.0, (len(features) - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(reduced)
