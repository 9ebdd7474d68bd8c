"""The penultimate layer's features of a dataset split, mapped to 2-D (t-SNE or PCA)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from torch import nn

from ..data.augment import to_float
from ..data.splits import Split
from ..errors import CnnlabError, unknown
from .attributions import eval_mode


def _last_linear(model: nn.Module) -> nn.Module:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise CnnlabError("the model has no dense output layer to take features from")
    return linears[-1]


@torch.no_grad()
def penultimate_features(model: nn.Module, split: Split, limit: int,
                         batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """What the output layer sees: its input vectors (N, F), with the labels (N,)."""
    head = _last_linear(model)
    features, labels, seen = [], [], 0
    device = next(model.parameters()).device

    def record(_module, inputs, _output):
        features.append(inputs[0].detach().float().cpu())

    handle = head.register_forward_hook(record)
    try:
        with eval_mode(model):
            for images, targets in split.batches(batch_size):
                model(to_float(images[: limit - seen].to(device)))
                labels.append(targets[: limit - seen])
                seen += len(labels[-1])
                if seen >= limit:
                    break
    finally:
        handle.remove()
    return torch.cat(features).numpy(), torch.cat(labels).numpy()


def project(features: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """(N, F) -> (N, 2) with scikit-learn's t-SNE (after PCA to 50 dims, as its docs advise) or PCA."""
    if method not in ("tsne", "pca"):
        raise unknown("projection", method, ("tsne", "pca"))
    if method == "pca" or len(features) < 5:
        return PCA(n_components=2, random_state=seed).fit_transform(features)
    reduced = PCA(n_components=min(50, *features.shape), random_state=seed).fit_transform(features)
    perplexity = min(30.0, (len(features) - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(reduced)
