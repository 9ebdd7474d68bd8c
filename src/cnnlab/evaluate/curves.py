"""Precision-recall and ROC curves per class (one class against the rest, scored by its
probability), their areas, and the thresholds that reach a target precision.

The curves and areas come from torchmetrics; the tests hold them equal to scikit-learn's.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torchmetrics.functional.classification import (
    multiclass_auroc,
    multiclass_average_precision,
    multiclass_precision_recall_curve,
    multiclass_roc,
)

from ..run.results import TARGET_PRECISIONS, ClassAuc, ClassThresholds, PrecisionThreshold
from . import figures as plots


@dataclass(frozen=True)
class ClassCurve:
    """One class's curves, for the figures: x and y of each, ascending threshold order as
    torchmetrics gives them."""

    name: str
    precision: torch.Tensor  # (T + 1,), the last point is (recall 0, precision 1)
    recall: torch.Tensor
    pr_thresholds: torch.Tensor  # (T,)
    false_positive_rate: torch.Tensor
    true_positive_rate: torch.Tensor
    support: int


@dataclass(frozen=True)
class Curves:
    classes: tuple[ClassCurve, ...]
    auc: tuple[ClassAuc, ...]
    thresholds: tuple[ClassThresholds, ...]


def _defined(support: int, images: int) -> bool:
    """A class's curve means something only with images of it and images of other classes."""
    return 0 < support < images


def _areas(probabilities: torch.Tensor, labels: torch.Tensor, names: list[str],
           supports: list[int]) -> tuple[ClassAuc, ...]:
    classes = len(names)
    auroc = multiclass_auroc(probabilities, labels, classes, average=None, thresholds=None)
    precision = multiclass_average_precision(probabilities, labels, classes, average=None,
                                             thresholds=None)
    rows = []
    for k, name in enumerate(names):
        known = _defined(supports[k], len(labels))
        rows.append(ClassAuc(name, round(float(auroc[k]), 6) if known else None,
                             round(float(precision[k]), 6) if known else None))
    return tuple(rows)


def precision_threshold(precision: torch.Tensor, recall: torch.Tensor, thresholds: torch.Tensor,
                        target: float) -> PrecisionThreshold:
    """The threshold of most recall among those whose precision reaches `target` (the highest
    such threshold where several keep the same recall: the same images, fewer borderline ones).
    `precision` and `recall` have one more point than `thresholds`, the curve's end (recall 0)."""
    reached = torch.nonzero(precision[:-1] >= target).flatten()
    if len(reached) == 0:
        return PrecisionThreshold(target, None, None, 0.0)
    best = recall[reached].max()
    index = int(reached[recall[reached] == best].max())
    # the threshold unrounded: an image whose probability equals it must still pass it
    return PrecisionThreshold(target, float(thresholds[index]), round(float(precision[index]), 6),
                              round(float(recall[index]), 6))


def class_curves(probabilities: torch.Tensor, labels: torch.Tensor, names: list[str],
                 targets: tuple[float, ...] = TARGET_PRECISIONS) -> Curves:
    """Curves, areas and thresholds of every class from softmax probabilities (N, K) and true
    labels (N,)."""
    probabilities, labels = probabilities.float().cpu(), labels.long().cpu()
    classes = len(names)
    supports = torch.bincount(labels, minlength=classes).tolist()
    with warnings.catch_warnings():  # a class without images: its row says None instead
        warnings.simplefilter("ignore", UserWarning)
        precision, recall, pr_thresholds = multiclass_precision_recall_curve(
            probabilities, labels, classes, thresholds=None)
        fpr, tpr, _ = multiclass_roc(probabilities, labels, classes, thresholds=None)
        areas = _areas(probabilities, labels, names, supports)
    curves, thresholds = [], []
    for k, name in enumerate(names):
        curves.append(ClassCurve(name, precision[k], recall[k], pr_thresholds[k], fpr[k], tpr[k],
                                 supports[k]))
        rows = (tuple(precision_threshold(precision[k], recall[k], pr_thresholds[k], target)
                      for target in targets) if _defined(supports[k], len(labels))
                else tuple(PrecisionThreshold(target, None, None, 0.0) for target in targets))
        thresholds.append(ClassThresholds(name, rows))
    return Curves(tuple(curves), areas, tuple(thresholds))


# Panels beyond this many classes would be too small to read: the figures then show the classes
# the model separates worst (lowest average precision), and their titles say so.
MOST_PANELS = 40


def _shown(curves: Curves) -> list[int]:
    order = list(range(len(curves.classes)))
    if len(order) <= MOST_PANELS:
        return order
    worst = sorted(order, key=lambda k: (curves.auc[k].average_precision is None,
                                         curves.auc[k].average_precision or 0.0))
    return sorted(worst[:MOST_PANELS])


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def write_curve_figures(curves: Curves, out: Path, title: str) -> None:
    """pr_curves.png and roc_curves.png: a panel per class, its area in the panel's title; the
    precision-recall panels mark the points of the target precisions' thresholds."""
    shown = _shown(curves)
    more = (f" ({len(shown)} of {len(curves.classes)} classes: the lowest average precision)"
            if len(shown) < len(curves.classes) else "")
    pr, roc = [], []
    for k in shown:
        curve, areas = curves.classes[k], curves.auc[k]
        marks = [(row.recall, row.precision, f"precision {row.target:g}")
                 for row in curves.thresholds[k].targets if row.threshold is not None]
        pr.append((f"{curve.name}: AP {_number(areas.average_precision)}",
                   curve.recall.tolist(), curve.precision.tolist(), marks))
        roc.append((f"{curve.name}: AUROC {_number(areas.auroc)}",
                    curve.false_positive_rate.tolist(), curve.true_positive_rate.tolist(), []))
    plots.class_curve_grid(pr, out / "pr_curves.png", f"precision-recall, {title}{more}",
                           "recall", "precision")
    plots.class_curve_grid(roc, out / "roc_curves.png", f"ROC, {title}{more}",
                           "false positive rate", "true positive rate", diagonal=True)


def threshold_rows(thresholds: tuple[ClassThresholds, ...]) -> list[list[Any]]:
    """thresholds.csv: a row per class and target precision."""
    rows: list[list[Any]] = [["class", "target_precision", "threshold", "precision", "recall"]]
    for row in thresholds:
        rows += [[row.name, target.target, "" if target.threshold is None else target.threshold,
                  "" if target.precision is None else target.precision, target.recall]
                 for target in row.targets]
    return rows
