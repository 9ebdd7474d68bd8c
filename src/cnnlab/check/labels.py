"""Label issues: out-of-sample class probabilities by stratified k-fold cross-validation (each
image's from a model that never saw it), then cleanlab's confident learning on them.

Two kinds of per-fold model: the exact linear probe (train/probe.py) on fixed feature vectors, for
photos and for --run's features; and, for small gray images without a run, a small CNN trained from
scratch for a few epochs on the fold's pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..base.errors import CnnlabError
from ..data.images import to_float

# (train indices, held-out indices) -> probabilities (len(held-out), K)
FoldModel = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class FoldPlan:
    folds: int
    note: str  # why fewer folds than asked, or ""


def plan_folds(labels: np.ndarray, class_names: list[str], asked: int) -> FoldPlan:
    """As many folds as asked, at most as many as the smallest class has images (stratified folds
    need one of each class per fold); a class of one image cannot be held out and learned at once."""
    counts = np.bincount(labels, minlength=len(class_names))
    present = [i for i, count in enumerate(counts) if count]
    if len(present) < 2:
        only = class_names[present[0]] if present else "none"
        raise CnnlabError(f"the training images have one class only ({only}); label issues need "
                          f"two or more classes")
    smallest = min(present, key=lambda i: counts[i])
    if counts[smallest] < 2:
        raise CnnlabError(f"class {class_names[smallest]!r} has 1 training image: cross-validation "
                          f"needs at least 2 per class (add images, or remove the class)")
    folds = min(asked, int(counts[smallest]))
    note = (f"{folds} folds, not {asked}: class {class_names[smallest]!r} has "
            f"{counts[smallest]} training images" if folds < asked else "")
    return FoldPlan(folds, note)


def out_of_sample_probabilities(labels: np.ndarray, num_classes: int, folds: int, seed: int,
                                fit_predict: FoldModel,
                                advance: Callable[[int], None] | None = None) -> np.ndarray:
    """(N, K) probabilities, each row predicted by the model of the fold that held it out."""
    from sklearn.model_selection import StratifiedKFold

    probabilities = np.zeros((len(labels), num_classes), dtype=np.float64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train_index, held_out in splitter.split(np.zeros(len(labels)), labels):
        probabilities[held_out] = fit_predict(train_index, held_out)
        if advance is not None:
            advance(1)
    return probabilities


def probe_model(features: torch.Tensor, labels: np.ndarray, num_classes: int) -> FoldModel:
    """Per fold, the exact linear probe (L-BFGS to convergence, scikit-learn's default penalty)."""
    from ..train import DEFAULT_C, fit_logistic

    targets = torch.from_numpy(labels)

    def fit_predict(train_index: np.ndarray, held_out: np.ndarray) -> np.ndarray:
        weight, bias, _ = fit_logistic(features[train_index], targets[train_index], num_classes,
                                       DEFAULT_C)
        logits = features[held_out].double() @ weight.T + bias
        return torch.softmax(logits, 1).numpy()

    return fit_predict


MIN_STEPS, MIN_BATCH = 100, 16


@dataclass(frozen=True)
class CnnRecipe:
    model: str = "fast"
    epochs: int = 3
    batch_size: int = 128
    lr: float = 5e-3
    weight_decay: float = 5e-4


def cnn_model(images: torch.Tensor, labels: np.ndarray, num_classes: int, recipe: CnnRecipe,
              device: torch.device, seed: int) -> FoldModel:
    """Per fold, a small CNN trained from scratch on the fold's uint8 (N, C, H, W) images."""
    targets = torch.from_numpy(labels)

    def fit_predict(train_index: np.ndarray, held_out: np.ndarray) -> np.ndarray:
        model = _train_cnn(images[train_index], targets[train_index], num_classes, recipe,
                           device, seed)
        return _predict(model, images[held_out], device)

    return fit_predict


def _schedule(count: int, recipe: CnnRecipe) -> tuple[int, int]:
    """(batch size, epochs): a small set gets smaller batches and more epochs, so that every fold
    takes at least MIN_STEPS steps (3 epochs of 96 images in batches of 128 are 3 steps, and
    learn nothing)."""
    batch = max(MIN_BATCH, min(recipe.batch_size, count // 8))
    steps_per_epoch = -(-count // batch)
    return batch, max(recipe.epochs, -(-MIN_STEPS // steps_per_epoch))


def _train_cnn(images: torch.Tensor, labels: torch.Tensor, num_classes: int, recipe: CnnRecipe,
               device: torch.device, seed: int) -> nn.Module:
    from ..models.registry import create_model

    torch.manual_seed(seed)
    batch_size, epochs = _schedule(len(labels), recipe)
    pixels = to_float(images[:4096])
    mean = pixels.mean((0, 2, 3)).tolist()
    std = pixels.std((0, 2, 3)).clamp_min(1e-3).tolist()
    model, _, _ = create_model(recipe.model, input_shape=tuple(images.shape[1:]),
                               num_classes=num_classes, mean=mean, std=std)
    model.to(device).train()
    steps = epochs * -(-len(labels) // batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr,
                                  weight_decay=recipe.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe.lr, total_steps=steps,
                                                   pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            loss = nn.functional.cross_entropy(model(to_float(images[batch].to(device))),
                                               labels[batch].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def _predict(model: nn.Module, images: torch.Tensor, device: torch.device) -> np.ndarray:
    parts = [torch.softmax(model(to_float(images[i:i + 512].to(device))), 1).cpu()
             for i in range(0, len(images), 512)]
    return torch.cat(parts).double().numpy()


@dataclass(frozen=True)
class LabelIssues:
    """Confident learning's verdict on each image of the pool."""

    flagged: np.ndarray  # (N,) bool: cleanlab's find_label_issues
    quality: np.ndarray  # (N,) label quality score in [0, 1]: low is likely wrong
    suggested: np.ndarray  # (N,) the most probable class by the out-of-sample model
    probabilities: np.ndarray  # (N, K)


def find_issues(labels: np.ndarray, probabilities: np.ndarray) -> LabelIssues:
    """cleanlab's find_label_issues (confident learning, its defaults) and its label quality
    scores (self-confidence) on the out-of-sample probabilities."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    flagged = find_label_issues(labels, probabilities, n_jobs=1)
    quality = get_label_quality_scores(labels, probabilities)
    return LabelIssues(np.asarray(flagged, bool), np.asarray(quality), probabilities.argmax(1),
                       probabilities)
