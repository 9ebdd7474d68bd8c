"""How well a run tells its own classes from images of others (`cnnlab evaluate RUN --unknown
DATA`): every score's AUROC and false-positive rate at 95% true-positive rate, known images (the
run's test split) against DATA, and what the run's own detector keeps and refuses."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from ..base.errors import CnnlabError
from ..base.fileio import atomic_write_json
from ..config import DataConfig
from ..data import TensorImages, load_dataset
from ..data.images import ImageReadError, image_to_tensor, is_image_file, open_image
from ..data.registry import list_datasets
from ..data.splits import Split
from ..run.contract import ModelCard
from ..run.results import OpenSetResult, ScoreQuality
from ..run.unknown import FeatureStatistics, Outputs, model_outputs, score_outputs
from ..run.unknown_scores import UNKNOWN_SCORES
from . import figures as plots

log = logging.getLogger("cnnlab")

TPR = 0.95  # the share of known images kept at which the false-positive rate is read


def quality(name: str, known: torch.Tensor, unknown: torch.Tensor) -> ScoreQuality:
    """AUROC and FPR at 95% TPR of a score (higher: known), as scikit-learn computes them."""
    truth = np.r_[np.ones(len(known)), np.zeros(len(unknown))]
    values = torch.cat([known, unknown]).double().numpy()
    fpr, tpr, _ = roc_curve(truth, values)
    return ScoreQuality(name, float(roc_auc_score(truth, values)),
                        float(fpr[np.searchsorted(tpr, TPR, side="left")]))


def unknown_split(data: str, card: ModelCard) -> Split:
    """The other images as the model takes them: a built-in dataset's test split, or every image
    in a folder (class subfolders or not), converted to the model's channels and size."""
    if data in {entry.name for entry in list_datasets()}:
        config = DataConfig(name=data, channels=card.input.channels, image_size=card.input.height)
        dataset = load_dataset(config)
        return dataset.test if dataset.test is not None else dataset.train
    folder = Path(data)
    files = _images_under(folder) if folder.is_dir() else [folder] if folder.is_file() else []
    if not files:
        raise CnnlabError(f"--unknown {data}: no images found")
    images = [image for image in (_readable(path, card) for path in files) if image is not None]
    if not images:
        raise CnnlabError(f"--unknown {data}: none of its {len(files)} image file(s) could be read")
    return TensorImages(torch.stack(images), torch.zeros(len(images), dtype=torch.long))


def _readable(path: Path, card: ModelCard) -> torch.Tensor | None:
    """The image at `path` as the model takes it (C, H, W); None, said in one line, where it
    cannot be read: one bad file among many unknown images is skipped, as training skips it."""
    try:
        image = open_image(path)
    except ImageReadError as error:
        log.warning("skipping unreadable image %s", error)
        return None
    resize = (card.preprocessing.interpolation, card.preprocessing.crop_pct)
    return image_to_tensor(image, *card.input.shape, *resize)


def _images_under(folder: Path) -> list[Path]:
    """Every image file below `folder`, through linked folders too (os.walk follows them where
    Path.rglob does not)."""
    return sorted(Path(root) / name for root, _, names in os.walk(folder, followlinks=True)
                  for name in names if is_image_file(Path(root) / name))


def measure_open_set(model, card: ModelCard, known: Split, train: Split, unknown: Split,
                     device: torch.device, out: Path) -> OpenSetResult:
    """Every score on the known and unknown images; writes unknown.json and unknown_scores.png."""
    inside, outside = model_outputs(model, known, device), model_outputs(model, unknown, device)
    fitted = model_outputs(model, train, device, limit=5000)
    statistics = FeatureStatistics.fit(fitted.features, fitted.labels, card.num_classes)
    by_score = {name: (_score(name, inside, card, statistics), _score(name, outside, card, statistics))
                for name in UNKNOWN_SCORES}
    result = _result(card, by_score, len(inside.labels), len(outside.labels))
    atomic_write_json(out / "unknown.json", result.to_dict())
    plots.score_histograms({name: (k.numpy(), u.numpy()) for name, (k, u) in by_score.items()},
                           out / "unknown_scores.png",
                           card.unknown.score if card.unknown else None,
                           card.unknown.threshold if card.unknown else None)
    return result


def _score(name: str, outputs: Outputs, card: ModelCard,
           statistics: FeatureStatistics) -> torch.Tensor:
    return score_outputs(name, outputs, card.temperature, statistics)


def _result(card: ModelCard, by_score: dict, known: int, unknown: int) -> OpenSetResult:
    qualities = tuple(quality(name, *pair) for name, pair in by_score.items())
    if card.unknown is None:
        return OpenSetResult(known, unknown, qualities, None, None, None)
    inside, outside = by_score[card.unknown.score]
    threshold = card.unknown.threshold
    return OpenSetResult(known, unknown, qualities, card.unknown.score,
                         float((outside < threshold).double().mean()),
                         float((inside >= threshold).double().mean()))
