"""`cnnlab evaluate`'s figures: confusion matrix, reliability diagram, mistakes, the translation
test, per-class curves, unknown-image scores."""

from __future__ import annotations

from pathlib import Path

from ..base.figures import plt, save_figure


def confusion_matrix_figure(matrix, class_names: list[str], path: Path, title: str = "") -> None:
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


def shift_curve(rows: list[dict], path: Path) -> None:
    figure, axis = plt.subplots(figsize=(5, 4))
    axis.plot([r["shift"] for r in rows], [100 * r["accuracy"] for r in rows], "o-")
    axis.set_xticks([r["shift"] for r in rows])
    axis.set_xlabel("shift (pixels, mean over right/left/down/up)")
    axis.set_ylabel("test accuracy (%)")
    axis.set_title("translation invariance")
    axis.grid(alpha=0.3)
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
