"""Every matplotlib figure in one place (Agg backend: files only, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .fileio import atomic_write  # noqa: E402


def save_figure(figure: plt.Figure, path: Path) -> None:
    atomic_write(path, lambda tmp: figure.savefig(tmp, format=path.suffix[1:], dpi=120,
                                                  bbox_inches="tight"))
    plt.close(figure)


def training_curves(history: list[dict[str, float]], path: Path) -> None:
    """Loss and accuracy per epoch, train beside validation."""
    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric, title in ((loss_axis, "loss", "Loss"), (acc_axis, "acc", "Accuracy")):
        axis.plot(epochs, [row[f"train_{metric}"] for row in history], "o-", label="train")
        if any(row.get(f"val_{metric}") == row.get(f"val_{metric}") for row in history):
            axis.plot(epochs, [row[f"val_{metric}"] for row in history], "o-", label="validation")
        axis.set_xlabel("epoch")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend()
    save_figure(figure, path)


def confusion_matrix(matrix, class_names: list[str], path: Path) -> None:
    """Counts and row-normalized (recall per true class) side by side."""
    import numpy as np

    matrix = np.asarray(matrix)
    normalized = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    size = max(6, 0.55 * len(class_names))
    figure, axes = plt.subplots(1, 2, figsize=(2 * size + 2, size))
    for axis, values, title, fmt in ((axes[0], matrix, "counts", "d"),
                                     (axes[1], normalized, "row-normalized", ".2f")):
        axis.imshow(values, cmap="Blues")
        axis.set_title(f"confusion matrix ({title})")
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        ticks = range(len(class_names))
        axis.set_xticks(ticks, class_names, rotation=60, ha="right")
        axis.set_yticks(ticks, class_names)
        if len(class_names) <= 20:
            threshold = values.max() / 2
            for (i, j), value in np.ndenumerate(values):
                axis.text(j, i, format(value, fmt), ha="center", va="center", fontsize=7,
                          color="white" if value > threshold else "black")
    save_figure(figure, path)


def reliability_diagram(accuracy, confidence, path: Path) -> None:
    """Accuracy against confidence per bin; a calibrated model lies on the diagonal."""
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    axis.plot(confidence, accuracy, "o-", label="model")
    axis.set_xlabel("confidence (top-1 probability)")
    axis.set_ylabel("accuracy")
    axis.set_title("reliability diagram")
    axis.legend()
    axis.grid(alpha=0.3)
    save_figure(figure, path)


def image_grid(images, captions: list[str], path: Path, title: str, columns: int = 4) -> None:
    """uint8 (N, C, H, W) images with a caption under each."""
    rows = (len(images) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 2.4, rows * 2.8), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, caption in zip(axes.flat, images, captions, strict=False):
        picture = image.permute(1, 2, 0).numpy()
        axis.imshow(picture[..., 0] if picture.shape[2] == 1 else picture, cmap="gray", vmin=0, vmax=255)
        axis.set_title(caption, fontsize=8)
    figure.suptitle(title)
    save_figure(figure, path)


def shift_curve(rows: list[dict], path: Path) -> None:
    figure, axis = plt.subplots(figsize=(5, 4))
    axis.plot([r["shift"] for r in rows], [100 * r["accuracy"] for r in rows], "o-")
    axis.set_xlabel("shift (pixels, mean over right/left/down/up)")
    axis.set_ylabel("test accuracy (%)")
    axis.set_title("translation invariance")
    axis.grid(alpha=0.3)
    save_figure(figure, path)
