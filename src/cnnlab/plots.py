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
        if metric == "acc" and "val_robust_acc" in history[0]:
            axis.plot(epochs, [row["val_robust_acc"] for row in history], "o-",
                      label="validation, PGD robust")
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


def _show(axis, image) -> None:
    """A float (C, H, W) image in [0, 1] on an axis, gray or colour."""
    picture = image.permute(1, 2, 0).numpy()
    if picture.shape[2] == 1:
        axis.imshow(picture[..., 0], cmap="gray", vmin=0, vmax=1)
    else:
        axis.imshow(picture.clip(0, 1))
    axis.axis("off")


def heatmap_overlay(image, heatmap, title: str, path: Path) -> None:
    """The input beside the heatmap laid over it (jet, half transparent)."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(6.4, 3.4))
    _show(left, image)
    left.set_title("input", fontsize=9)
    _show(right, image)
    peak = float(heatmap.max()) or 1.0
    right.imshow((heatmap / peak).numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
    right.set_title("attribution", fontsize=9)
    figure.suptitle(title, fontsize=10)
    save_figure(figure, path)


def overlay_image(image, heatmap, size: int = 320):
    """The heatmap (H, W) laid over the image (C, H, W) in [0, 1], jet, half transparent, as one
    RGB picture `size` pixels wide (nearest neighbour: a 28-pixel input stays sharp)."""
    from PIL import Image

    pixels = image.permute(1, 2, 0).numpy()
    pixels = pixels.repeat(3, axis=2) if pixels.shape[2] == 1 else pixels
    peak = float(heatmap.max()) or 1.0
    colours = plt.get_cmap("jet")((heatmap / peak).clamp(0, 1).numpy())[..., :3]
    blended = (0.5 * pixels + 0.5 * colours).clip(0, 1)
    picture = Image.fromarray((blended * 255).round().astype("uint8"))
    height = round(size * picture.height / picture.width)
    return picture.resize((size, height), Image.Resampling.NEAREST)


def _small_grid(count: int, cell: float) -> tuple[plt.Figure, list]:
    """A figure of `count` square cells, 8 to a row, axes hidden; returns the first `count` axes."""
    columns = min(8, count)
    rows = (count + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(columns * cell, rows * cell + 0.5),
                                squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    return figure, list(axes.flat)[:count]


def feature_map_grid(maps, title: str, path: Path, most: int = 32) -> None:
    """Up to `most` channels of one layer's activation (C, H, W), each scaled on its own."""
    count = min(most, maps.shape[0])
    figure, axes = _small_grid(count, 1.3)
    for index, axis in enumerate(axes):
        axis.imshow(maps[index].numpy(), cmap="viridis")
        axis.set_title(str(index), fontsize=7)
    figure.suptitle(f"feature maps: {title}" + (f", first {count}" if count < maps.shape[0] else ""),
                    fontsize=10)
    save_figure(figure, path)


def filter_grid(weights, path: Path) -> None:
    """First-layer kernels (F, C, k, k): RGB when C is 3, else the mean over input channels."""
    count = weights.shape[0]
    figure, axes = _small_grid(count, 1.1)
    for index, axis in enumerate(axes):
        kernel = weights[index]
        if kernel.shape[0] == 3:
            low, high = kernel.min(), kernel.max()
            axis.imshow(((kernel - low) / (high - low + 1e-12)).permute(1, 2, 0).numpy())
        else:
            axis.imshow(kernel.mean(0).numpy(), cmap="gray")
    k = weights.shape[-1]
    figure.suptitle(f"first conv layer: {count} filters of {k}x{k}", fontsize=10)
    save_figure(figure, path)


def embedding_scatter(points, labels, class_names: list[str], title: str, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(7, 6))
    colours = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    for index, name in enumerate(class_names):
        chosen = labels == index
        axis.scatter(points[chosen, 0], points[chosen, 1], s=4, color=colours(index % colours.N),
                     label=name)
    axis.legend(markerscale=3, fontsize=8, loc="best")
    axis.set_title(title)
    axis.set_xticks([])
    axis.set_yticks([])
    save_figure(figure, path)


def robust_accuracy_curve(rows: list[dict], clean_accuracy: float, path: Path, title: str) -> None:
    """Robust accuracy (%) against epsilon, beside the clean accuracy."""
    figure, axis = plt.subplots(figsize=(6, 4))
    eps = [row["eps"] for row in rows]
    axis.plot(eps, [100 * row["robust_accuracy"] for row in rows], "o-", label="robust accuracy")
    axis.axhline(100 * clean_accuracy, linestyle="--", color="gray", label="clean accuracy")
    axis.set_xlabel("epsilon (pixel units, images in [0, 1])")
    axis.set_ylabel("accuracy (%)")
    axis.set_ylim(0, 100)
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend()
    save_figure(figure, path)


def adversarial_examples(clean, adversarial, captions: list[tuple[str, str]], path: Path,
                         title: str) -> None:
    """One row per image: clean, adversarial, and the perturbation magnified to fill gray +-0.5.

    `clean` and `adversarial` are float (N, C, H, W) in [0, 1]; captions are (clean, adversarial).
    """
    rows = max(len(clean), 1)
    figure, axes = plt.subplots(rows, 3, figsize=(7.2, rows * 2.6), squeeze=False,
                                layout="constrained")
    for axis in axes.flat:
        axis.axis("off")
    for row, (x, x_adv, (clean_caption, adv_caption)) in enumerate(
            zip(clean, adversarial, captions, strict=True)):
        delta = x_adv - x  # (C, H, W)
        gain = 0.5 / max(float(delta.abs().max()), 1e-12)
        for column, (image, caption) in enumerate(
                ((x, clean_caption), (x_adv, adv_caption),
                 (0.5 + gain * delta, f"perturbation x{gain:.0f}"))):
            picture = image.clamp(0, 1).permute(1, 2, 0).numpy()
            axes[row, column].imshow(picture[..., 0] if picture.shape[2] == 1 else picture,
                                     cmap="gray", vmin=0, vmax=1)
            axes[row, column].set_title(caption, fontsize=8)
    figure.suptitle(title)
    save_figure(figure, path)
