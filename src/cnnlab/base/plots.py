"""Every matplotlib figure in one place (Agg backend: files only, no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .errors import printable  # noqa: E402
from .fileio import atomic_write  # noqa: E402


def figure_bytes(figure: plt.Figure, format: str = "png") -> bytes:
    """The figure as the bytes of a file, drawn before anything is written: a caller that writes
    several files can write all of them or none."""
    import io

    # File and class names reach captions and ticks: a name that is not UTF-8 would stop the
    # drawing, a control character draw as a box. Line breaks are the captions' own: kept.
    for text in figure.findobj(matplotlib.text.Text):
        text.set_text("\n".join(printable(line) for line in text.get_text().split("\n")))
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format=format, dpi=120, bbox_inches="tight")
    finally:
        plt.close(figure)
    return buffer.getvalue()


def save_figure(figure: plt.Figure, path: Path) -> None:
    drawn = figure_bytes(figure, path.suffix[1:])
    atomic_write(path, lambda tmp: tmp.write_bytes(drawn))


def _integer_epochs(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("epoch")
    axis.grid(alpha=0.3)


def _has(history: list[dict[str, float]], key: str) -> bool:
    return any(key in row and not math.isnan(row[key]) for row in history)  # NaN: not measured


def training_curves(history: list[dict[str, float]], path: Path, *, best_epoch: int | None = None,
                    label_smoothing: float = 0.0, adversarial: bool = False) -> None:
    """Loss, accuracy (%) and learning rate per epoch, train beside validation, the best epoch
    marked. The training loss is what training minimized (label smoothing included, on attacked
    batches under adversarial training); the validation loss is plain cross-entropy."""
    epochs = [row["epoch"] for row in history]
    train = "train (attacked batches)" if adversarial else "train"
    panels = 3 if _has(history, "lr") else 2
    figure, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 4), layout="constrained")
    loss_axis, acc_axis = axes[0], axes[1]
    smoothing = f", with label smoothing {label_smoothing:g}" if label_smoothing else ""
    loss_axis.plot(epochs, [row["train_loss"] for row in history], "o-", label=train + smoothing)
    acc_axis.plot(epochs, [100 * row["train_acc"] for row in history], "o-", label=train)
    if _has(history, "val_loss"):
        loss_axis.plot(epochs, [row["val_loss"] for row in history], "o-", label="validation")
        acc_axis.plot(epochs, [100 * row["val_acc"] for row in history], "o-", label="validation")
    if _has(history, "val_robust_acc"):
        acc_axis.plot(epochs, [100 * row["val_robust_acc"] for row in history], "o-",
                      label="validation, PGD robust")
    losses = [row[key] for row in history for key in ("train_loss", "val_loss")
              if row.get(key, 0) > 0]
    if losses and max(losses) / min(losses) > 30:  # spans decades: a log axis shows them all
        loss_axis.set_yscale("log")
    loss_axis.set_title("loss")
    acc_axis.set_title("accuracy (%)")
    if panels == 3:
        axes[2].plot(epochs, [row["lr"] for row in history], "o-", color="gray")
        axes[2].set_title("learning rate (last step of the epoch)")
        axes[2].ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    for axis in axes:
        _integer_epochs(axis)
        if best_epoch:
            axis.axvline(best_epoch, linestyle=":", color="green", label=f"best epoch ({best_epoch})")
    loss_axis.legend(fontsize=8)
    acc_axis.legend(fontsize=8)
    save_figure(figure, path)


def compared_curves(runs: list[tuple[str, list[dict[str, float]]]], path: Path) -> None:
    """The learning curves of several runs overlaid: loss and accuracy (%) per epoch, one colour
    per run, validation solid and training dashed."""
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    for number, (name, history) in enumerate(runs):
        colour, epochs = f"C{number % 10}", [row["epoch"] for row in history]
        for axis, key, scale in ((loss_axis, "loss", 1), (acc_axis, "acc", 100)):
            axis.plot(epochs, [scale * row[f"train_{key}"] for row in history], "--",
                      color=colour, alpha=0.7, label=f"{name} train")
            if _has(history, f"val_{key}"):
                axis.plot(epochs, [scale * row[f"val_{key}"] for row in history], "o-",
                          color=colour, markersize=3, label=f"{name} validation")
    loss_axis.set_title("loss")
    acc_axis.set_title("accuracy (%)")
    for axis in (loss_axis, acc_axis):
        _integer_epochs(axis)
    acc_axis.legend(fontsize=7, loc="lower right")
    save_figure(figure, path)


def confusion_matrix(matrix, class_names: list[str], path: Path, title: str = "") -> None:
    """Counts and row-normalized (recall per true class, %) side by side, each with a colorbar;
    empty cells stay blank so the mistakes stand out."""
    import numpy as np

    matrix = np.asarray(matrix)
    normalized = 100 * matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    size = max(5, 0.5 * len(class_names) + 2)
    figure, axes = plt.subplots(1, 2, figsize=(2 * size + 2, size), layout="constrained")
    font = 8 if len(class_names) <= 10 else 6
    for axis, values, name, fmt in ((axes[0], matrix, "counts", "d"),
                                    (axes[1], normalized, "% of each true class", ".0f")):
        shown = axis.imshow(values, cmap="Blues")
        figure.colorbar(shown, ax=axis, shrink=0.8)
        axis.set_title(name)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        ticks = range(len(class_names))
        axis.set_xticks(ticks, class_names, rotation=45, ha="right", fontsize=font)
        axis.set_yticks(ticks, class_names, fontsize=font)
        if len(class_names) <= 20:
            threshold = values.max() / 2
            for (i, j), value in np.ndenumerate(values):
                if matrix[i, j]:
                    axis.text(j, i, format(value, fmt), ha="center", va="center", fontsize=font,
                              color="white" if value > threshold else "black")
    figure.suptitle(title or "confusion matrix")
    save_figure(figure, path)


def reliability_diagram(accuracy, confidence, counts, ece: float, path: Path) -> None:
    """Accuracy against confidence per bin (a calibrated model lies on the diagonal), with how
    many images each bin holds under it."""
    figure, (axis, count_axis) = plt.subplots(2, 1, figsize=(5, 6.2), sharex=True,
                                              height_ratios=(3, 1), layout="constrained")
    axis.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    axis.plot(confidence, accuracy, "o-", label="model")
    axis.set_ylabel("accuracy")
    axis.set_title(f"reliability diagram (ECE {ece:.2%})")
    axis.legend()
    axis.grid(alpha=0.3)
    count_axis.bar(confidence, counts, width=0.05, color="gray")
    count_axis.set_yscale("log")
    count_axis.set_ylabel("images")
    count_axis.set_xlabel("confidence (top-1 probability)")
    count_axis.set_xlim(0, 1)
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


def picture_grid(pictures: list, captions: list[str], title: str, columns: int = 6) -> bytes:
    """uint8 pictures, (H, W) gray or (H, W, 3) colour (None: a cell that says so), each with a
    caption over it; the PNG's bytes. Gray stays gray at its own levels (no colour map, no
    stretching), and pixels are drawn as squares, so a 28-pixel image is legible."""
    columns = max(1, min(columns, len(pictures)))
    rows = (len(pictures) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 2.3, rows * 3.0 + 0.4),
                                squeeze=False, layout="constrained")
    for axis in axes.flat:
        axis.axis("off")
    for axis, picture, caption in zip(axes.flat, pictures, captions, strict=False):
        if picture is None:
            axis.text(0.5, 0.5, "unreadable", ha="center", va="center", color="firebrick")
        elif picture.ndim == 2:
            axis.imshow(picture, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        else:
            axis.imshow(picture, interpolation="nearest")
        axis.set_title(caption, fontsize=8, loc="left")
    figure.suptitle(title, fontsize=11)
    return figure_bytes(figure)


def shift_curve(rows: list[dict], path: Path) -> None:
    figure, axis = plt.subplots(figsize=(5, 4))
    axis.plot([r["shift"] for r in rows], [100 * r["accuracy"] for r in rows], "o-")
    axis.set_xticks([r["shift"] for r in rows])
    axis.set_xlabel("shift (pixels, mean over right/left/down/up)")
    axis.set_ylabel("test accuracy (%)")
    axis.set_title("translation invariance")
    axis.grid(alpha=0.3)
    save_figure(figure, path)


def lr_find_curve(lrs: list[float], losses: list[float], smoothed: list[float],
                  suggestions: dict[str, tuple[float, float, float]], rule: str, path: Path,
                  title: str) -> None:
    """The range test: loss against the rate (log axis), measured and smoothed, and each rule's
    point (rule -> (suggested rate, marked rate, loss)); the rule taken is drawn as a line."""
    figure, axis = plt.subplots(figsize=(7, 4.5), layout="constrained")
    axis.plot(lrs, losses, color="lightgray", linewidth=0.8, label="loss per step")
    axis.plot(lrs, smoothed, color="black", linewidth=1.4, label="smoothed (what the rules read)")
    for number, (name, (rate, at, loss)) in enumerate(suggestions.items()):
        colour = f"C{number}"
        shown = f"{name}: {rate:.2e}" + (" (a tenth of the minimum's rate)" if at != rate else "")
        axis.plot(at, loss, "o", color=colour, markersize=7, label=shown)
        if name == rule:
            axis.axvline(rate, color=colour, linestyle="--", linewidth=1,
                         label=f"suggested: --lr {rate:.2g}")
    axis.set_xscale("log")
    low, high = min(smoothed), max(smoothed)
    axis.set_ylim(low - 0.1 * (high - low), min(high, 4 * low) + 0.2 * (high - low))
    axis.set_xlabel("learning rate (the head's, log scale)")
    axis.set_ylabel("training loss")
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    save_figure(figure, path)


def class_curve_grid(panels: list[tuple[str, list[float], list[float], list[tuple[float, float, str]]]],
                     path: Path, title: str, xlabel: str, ylabel: str, diagonal: bool = False,
                     columns: int = 5) -> None:
    """One small panel per class, so 10 or 100 classes stay readable where overlaid curves would
    not: (title, x, y, marked points (x, y, label)) each, on shared [0, 1] axes."""
    columns = min(columns, len(panels))
    rows = (len(panels) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 2.5, rows * 2.5 + 0.4),
                                squeeze=False, sharex=True, sharey=True, layout="constrained")
    for axis in axes.flat[len(panels):]:
        axis.axis("off")
    for axis, (name, x, y, points) in zip(axes.flat, panels, strict=False):
        if diagonal:
            axis.plot([0, 1], [0, 1], ":", color="gray", linewidth=0.8)
        axis.plot(x, y, drawstyle="steps-post", linewidth=1.2)
        for px, py, label in points:
            axis.plot(px, py, "o", markersize=3.5, label=label)
        axis.set_title(name, fontsize=8)
        axis.set_xlim(-0.02, 1.02)
        axis.set_ylim(-0.02, 1.02)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="outside lower center", ncol=len(handles), fontsize=8)
    figure.supxlabel(xlabel, fontsize=9)
    figure.supylabel(ylabel, fontsize=9)
    figure.suptitle(title, fontsize=10)
    save_figure(figure, path)


def _show(axis, image) -> None:
    """A float (C, H, W) image in [0, 1] on an axis, gray or colour."""
    picture = image.permute(1, 2, 0).numpy()
    if picture.shape[2] == 1:
        axis.imshow(picture[..., 0], cmap="gray", vmin=0, vmax=1)
    else:
        axis.imshow(picture.clip(0, 1))
    axis.axis("off")


# Attribution maps: perceptually uniform (equal steps look equal), unlike jet, whose bright bands
# invent edges that are not in the map.
ATTRIBUTION_COLORMAP = "inferno"


def heatmap_overlay(image, heatmap, title: str, path: Path, peak: float | None = None) -> None:
    """The input beside the heatmap laid over it, with a colorbar. `peak`: the value at the top of
    the scale (one shared by several maps makes them comparable); default the map's own maximum."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(7, 3.4), layout="constrained")
    _show(left, image)
    left.set_title("input", fontsize=9)
    _show(right, image)
    top = peak if peak is not None else (float(heatmap.max()) or 1.0)
    shown = right.imshow(heatmap.numpy(), cmap=ATTRIBUTION_COLORMAP, alpha=0.6, vmin=0, vmax=top)
    figure.colorbar(shown, ax=right, shrink=0.8,
                    label="attribution" + (" (shared scale)" if peak is not None else ""))
    right.set_title("attribution", fontsize=9)
    figure.suptitle(title, fontsize=10)
    save_figure(figure, path)


def overlay_image(image, heatmap, size: int = 320):
    """The heatmap (H, W) laid over the image (C, H, W) in [0, 1], half transparent, as one RGB
    picture `size` pixels wide (nearest neighbour: a 28-pixel input stays sharp)."""
    from PIL import Image

    pixels = image.permute(1, 2, 0).numpy()
    pixels = pixels.repeat(3, axis=2) if pixels.shape[2] == 1 else pixels
    peak = float(heatmap.max()) or 1.0
    colours = plt.get_cmap(ATTRIBUTION_COLORMAP)((heatmap / peak).clamp(0, 1).numpy())[..., :3]
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


def embedding_scatter(points, labels, class_names: list[str], title: str, path: Path,
                      axis_name: str = "component") -> None:
    figure, axis = plt.subplots(figsize=(8, 6), layout="constrained")
    colours = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    for index, name in enumerate(class_names):
        chosen = labels == index
        axis.scatter(points[chosen, 0], points[chosen, 1], s=4, color=colours(index % colours.N),
                     label=name)
    # outside the points, so no cluster hides behind it
    axis.legend(markerscale=3, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    axis.set_title(title)
    axis.set_xlabel(f"{axis_name} 1")
    axis.set_ylabel(f"{axis_name} 2")
    axis.set_xticks([])
    axis.set_yticks([])
    save_figure(figure, path)


def robust_accuracy_curve(rows: list[dict], clean_accuracy: float, path: Path, title: str) -> None:
    """Robust accuracy (%) against epsilon, beside the clean accuracy (bars for one epsilon)."""
    figure, axis = plt.subplots(figsize=(6, 4), layout="constrained")
    eps = [row["eps"] for row in rows]
    robust = [100 * row["robust_accuracy"] for row in rows]
    if len(rows) == 1:
        bars = axis.bar(["clean", f"eps {eps[0]:g}"], [100 * clean_accuracy, robust[0]],
                        color=["gray", "tab:blue"])
        axis.bar_label(bars, fmt="%.1f%%")
    else:
        axis.plot(eps, robust, "o-", label="robust accuracy")
        axis.axhline(100 * clean_accuracy, linestyle="--", color="gray", label="clean accuracy")
        axis.set_xlabel("epsilon (pixel units, images in [0, 1])")
        axis.legend()
    axis.set_ylabel("accuracy (%)")
    axis.set_ylim(0, 100 if len(rows) > 1 else 110)  # room for the bars' labels
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
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


def score_histograms(scores: dict, path: Path, chosen: str | None = None,
                     threshold: float | None = None) -> None:
    """One panel per score: histograms of the known and the unknown images' scores (higher: more
    like the known), the run's own threshold marked on its own score."""
    import numpy as np

    figure, axes = plt.subplots(1, len(scores), figsize=(4 * len(scores), 3.4), layout="constrained")
    for axis, (name, (known, unknown)) in zip(np.atleast_1d(axes), scores.items(), strict=True):
        bins = np.histogram_bin_edges(np.r_[known, unknown], bins=40)
        axis.hist(known, bins=bins, alpha=0.6, density=True, label="known (test split)")
        axis.hist(unknown, bins=bins, alpha=0.6, density=True, label="unknown")
        if name == chosen and threshold is not None:
            axis.axvline(threshold, color="black", linestyle="--", label="threshold")
        axis.set_title(name + (" (the run's detector)" if name == chosen else ""))
        axis.set_xlabel("score (higher: more like the known)")
        axis.xaxis.set_major_locator(plt.MaxNLocator(4))  # distances run to 1e5: keep labels apart
        axis.set_yticks([])
    np.atleast_1d(axes)[0].legend(fontsize=8)
    save_figure(figure, path)
