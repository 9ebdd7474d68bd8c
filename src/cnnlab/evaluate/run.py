"""Evaluate a trained run: metrics a person can read, and the figures that go with them.

Metrics come from scikit-learn and torchmetrics; this module only feeds them and writes the results
to RUN/evaluate/.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_calibration_error

from ..base.devices import resolve_device
from ..base.fileio import atomic_write_json, atomic_write_text
from ..base.progress import tracked
from ..base.settings import resolve
from ..data import TensorImages
from ..data.splits import Split
from ..run.data import NOT_HELD_OUT, held_out, pick_split
from ..run.engine import cached_engine, forward_engine
from ..run.folder import data_qualifiers, export_of, load_model, read_card, results_folder
from ..run.inference import predict_logits
from ..run.results import (
    AveragedMetrics,
    ClassMetrics,
    EvaluationMetrics,
    MeasuredWith,
    OpenSetResult,
    ShiftAccuracy,
)
from . import figures as plots
from .curves import class_curves, threshold_rows, write_curve_figures
from .predictions import PREDICTIONS, PredictionRow, prediction_rows, write_predictions
from .settings import EvaluateSettings
from .top_losses import TOP_LOSSES, TOP_LOSSES_SHOWN, caption, worst

log = logging.getLogger("cnnlab")

ECE_BINS = 15
MISTAKES_SHOWN = 16


@dataclass
class Evaluation:
    metrics: EvaluationMetrics
    folder: Path
    top_losses: list[PredictionRow] = field(default_factory=list)  # worst first
    open_set: OpenSetResult | None = None  # with --unknown: known against unknown images


def per_class_table(labels: torch.Tensor, predictions: torch.Tensor, class_names: list[str]
                    ) -> tuple[tuple[ClassMetrics, ...], dict[str, AveragedMetrics]]:
    """Per-class precision, recall, F1 and support, plus macro and weighted averages."""
    indices = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=indices, zero_division=0)
    rows = tuple(ClassMetrics(name, float(p), float(r), float(f), int(s)) for name, p, r, f, s
                 in zip(class_names, precision, recall, f1, support, strict=True))
    averages = {}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(labels, predictions, labels=indices,
                                                     average=average, zero_division=0)
        averages[average] = AveragedMetrics(float(p), float(r), float(f))
    return rows, averages


def shift_images(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Move (B, C, H, W) images by (dy, dx) pixels, filling the uncovered border with zeros."""
    height, width = images.shape[-2:]
    shifted = torch.zeros_like(images)
    shifted[..., max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] = \
        images[..., max(-dy, 0):height - max(dy, 0), max(-dx, 0):width - max(dx, 0)]
    return shifted


SMALL_IMAGE_SIDE = 64  # up to here a 3-pixel shift is a sizeable share of the image


def default_max_shift(card) -> int:
    """3 pixels for small images trained from scratch; 0 (no test) for photos and pretrained
    networks, where 1-3 pixels say nothing about translation and cost most of evaluate's time."""
    small = max(card.input.height, card.input.width) <= SMALL_IMAGE_SIDE
    return 3 if small and not card.pretrained else 0


def shift_accuracy(model, split: Split, device: torch.device, max_shift: int,
                   quiet: bool = True) -> tuple[ShiftAccuracy, ...]:
    """Accuracy when every image is moved by s pixels, averaged over right, left, down and up."""
    if not isinstance(split, TensorImages) or max_shift == 0:
        return ()
    rows = []
    with tracked("translation test", len(split) * (1 + 4 * max_shift), quiet=quiet) as advance:
        for shift in range(0, max_shift + 1):
            moves = [(0, 0)] if shift == 0 else [(0, shift), (0, -shift), (shift, 0), (-shift, 0)]
            accuracies = []
            for dy, dx in moves:
                moved = TensorImages(shift_images(split.images, dy, dx), split.labels)
                logits, labels = predict_logits(model, moved, device, channels_last=True,
                                                advance=advance)
                accuracies.append((logits.argmax(1) == labels).float().mean().item())
            rows.append(ShiftAccuracy(shift, sum(accuracies) / len(accuracies)))
    return tuple(rows)


def _split_images(split: Split, indices: list[int]) -> torch.Tensor:
    if isinstance(split, TensorImages):
        return split.images[indices]
    return torch.stack([split.subset(torch.tensor([i])).batches(1).__next__()[0][0]
                        for i in indices])


def _summary_metrics(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    probabilities = logits.softmax(1)
    metrics = {
        "images": len(labels),
        "loss": F.cross_entropy(logits, labels).item(),
        "accuracy": multiclass_accuracy(logits, labels, num_classes, average="micro").item(),
        "ece": multiclass_calibration_error(probabilities, labels, num_classes, n_bins=ECE_BINS,
                                            norm="l1").item(),
    }
    if num_classes >= 5:
        metrics["top5_accuracy"] = multiclass_accuracy(logits, labels, num_classes, top_k=5,
                                                       average="micro").item()
    return metrics


def _write_csv(path: Path, rows: list[list[Any]]) -> None:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _caption(names: list[str], split: Split, index: int, label: int, predicted: int,
             confidence: float) -> str:
    where = f"{split.paths[index].name}\n" if split.paths is not None else ""
    return f"{where}true: {names[label]}\npred: {names[predicted]} ({confidence:.0%})"


def _write_figures(out: Path, labels, predictions, probabilities, matrix, names, split,
                   metrics: EvaluationMetrics) -> None:
    import numpy as np

    confidence = probabilities.max(1).values
    correct = (predictions == labels).numpy()
    accuracy_per_bin, confidence_per_bin = calibration_curve(correct, confidence.numpy(),
                                                             n_bins=ECE_BINS, strategy="uniform")
    counts = np.histogram(confidence.numpy(), bins=ECE_BINS, range=(0, 1))[0]
    title = (f"{Path(metrics.run).name}: accuracy {metrics.accuracy:.2%} on "
             f"{metrics.data} {metrics.split} ({metrics.images} images)")
    plots.confusion_matrix_figure(matrix, names, out / "confusion_matrix.png", title)
    plots.reliability_diagram(accuracy_per_bin, confidence_per_bin, counts[counts > 0],
                              metrics.ece, out / "reliability.png")
    wrong = torch.nonzero(predictions != labels).flatten()
    order = wrong[confidence[wrong].argsort(descending=True)][:MISTAKES_SHOWN].tolist()
    if order:
        captions = [_caption(names, split, i, labels[i], predictions[i], confidence[i])
                    for i in order]
        plots.image_grid(_split_images(split, order), captions, out / "mistakes.png",
                         "most confidently wrong")
    shifts = [asdict(row) for row in metrics.translation]
    if shifts:
        plots.shift_curve(shifts, out / "shift.png")
    # a figure this evaluation has nothing for must not be left from an earlier one
    for name, made in (("mistakes.png", bool(order)), ("shift.png", bool(shifts))):
        if not made:
            (out / name).unlink(missing_ok=True)


def _write_predictions(out: Path, logits: torch.Tensor, labels: torch.Tensor, names: list[str],
                       split: Split) -> list[PredictionRow]:
    """predictions.csv: each image's true and predicted class, probability and loss, in split
    order (what `cnnlab compare` pairs two runs on); returns its rows."""
    losses = F.cross_entropy(logits, labels, reduction="none")
    confidence, predicted = logits.softmax(1).max(1)
    files = [str(path) for path in split.paths] if split.paths is not None else None
    rows = prediction_rows(predicted.tolist(), labels.tolist(), confidence.tolist(),
                           losses.tolist(), names, files)
    write_predictions(out / PREDICTIONS, rows)
    return rows


def _write_top_losses(out: Path, rows: list[PredictionRow], split: Split,
                      count: int) -> list[PredictionRow]:
    """top_losses.png: the `count` images of highest loss, named by file; returns their rows."""
    chosen = worst(rows, count)
    if chosen:
        plots.image_grid(_split_images(split, [row.index for row in chosen]),
                         [caption(row) for row in chosen], out / TOP_LOSSES,
                         f"top losses: the {len(chosen)} images of highest loss",
                         columns=min(6, len(chosen)))
    else:  # none asked for: no figure left from an earlier evaluation
        (out / TOP_LOSSES).unlink(missing_ok=True)
    return chosen


def evaluate_run(run: str | Path, settings: EvaluateSettings | None = None,
                 **options: Any) -> Evaluation:
    """Evaluate a run's best model on a split and write RUN/evaluate/ (RUN/evaluate-val/ for
    the validation split, RUN/evaluate-NAME/ for other data NAME, or `out`).

    Args:
        run: the run folder.
        settings: EvaluateSettings (default: its defaults); `options` override its fields by name,
            e.g. split="val", max_shift=0.
    """
    run, settings = Path(run), resolve(EvaluateSettings, settings, options)
    split = settings.split
    torch_device = resolve_device(settings.device)
    model, card, network = _networks(run, settings, torch_device)
    max_shift = default_max_shift(card) if settings.max_shift is None else settings.max_shift
    chosen, data_name = pick_split(run, card, settings.data, split)
    unseen = held_out(card, settings.data, split)
    if not unseen:
        log.warning("%s split: %s", split, NOT_HELD_OUT)
    with tracked("evaluating", len(chosen), quiet=settings.quiet) as advance:
        logits, labels = predict_logits(network, chosen, torch_device, settings.batch_size,
                                        channels_last=True, advance=advance)
    names = list(card.class_names)
    predictions, probabilities = logits.argmax(1), logits.softmax(1)
    per_class, averages = per_class_table(labels, predictions, names)
    curves = class_curves(probabilities, labels, names)
    metrics = EvaluationMetrics(
        run=str(run), data=data_name, split=split, **_summary_metrics(logits, labels, len(names)),
        per_class=per_class, macro_avg=averages["macro"], weighted_avg=averages["weighted"],
        translation=shift_accuracy(network, chosen, torch_device, max_shift, settings.quiet),
        per_class_auc=curves.auc, thresholds=curves.thresholds, held_out=unseen,
        measured_with=MeasuredWith.of(card))
    matrix = confusion_matrix(labels, predictions, labels=list(range(len(names))))
    out = results_folder(run, "evaluate", settings.out, data_qualifiers(split, settings.data))
    _write_csv(out / "confusion_matrix.csv", [["true \\ predicted", *names]] +
               [[name, *row.tolist()] for name, row in zip(names, matrix, strict=True)])
    _write_csv(out / "per_class.csv", [list(per_class[0].to_dict())] +
               [list(row.to_dict().values()) for row in per_class])
    _write_csv(out / "thresholds.csv", threshold_rows(curves.thresholds))
    _write_figures(out, labels, predictions, probabilities, matrix, names, chosen, metrics)
    write_curve_figures(curves, out, f"{Path(metrics.run).name} on {metrics.data} "
                                     f"{metrics.split} ({metrics.images} images)")
    rows = _write_predictions(out, logits, labels, names, chosen)
    top = _write_top_losses(out, rows, chosen, TOP_LOSSES_SHOWN if settings.top_losses is None
                             else settings.top_losses)
    atomic_write_json(out / "metrics.json", metrics.to_dict())
    open_set = _open_set(run, model, card, chosen, settings.unknown, torch_device, out) \
        if settings.unknown else None
    return Evaluation(metrics, out, top, open_set)


def _networks(run: Path, settings: EvaluateSettings, device: torch.device):
    """The PyTorch model (None where it is not needed), the model card, and what runs the
    forward passes: a cached ONNX Runtime graph needs no PyTorch model unless --unknown does."""
    if settings.unknown is None and export_of(run) is None:
        card = read_card(run)
        ready = cached_engine(run, card, settings.engine, device)
        if ready is not None:
            return None, card, ready
    model, card = load_model(run, device)
    network = forward_engine(run, model, card, settings.engine, device)
    return model.to(memory_format=torch.channels_last), card, network  # 20% faster convs on CPU


def _open_set(run: Path, model, card, known: Split, unknown: str, device: torch.device,
              out: Path) -> OpenSetResult:
    """--unknown DATA: each unknown-image score, the split evaluated against DATA's images."""
    from ..run.data import run_dataset
    from .unknown import measure_open_set, unknown_split

    return measure_open_set(model, card, known, run_dataset(run, card).train,
                            unknown_split(unknown, card), device, out)
