"""What every figure is saved with: the Agg backend (files only, no display), names made printable,
drawn whole before anything is written. Each stage draws its own figures (its figures.py)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .errors import printable  # noqa: E402
from .fileio import atomic_write  # noqa: E402

__all__ = ["figure_bytes", "integer_epochs", "measured", "plt", "save_figure", "show_image", "small_grid"]


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


def integer_epochs(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("epoch")
    axis.grid(alpha=0.3)


def show_image(axis, image) -> None:
    """A float (C, H, W) image in [0, 1] on an axis, gray or colour."""
    picture = image.permute(1, 2, 0).numpy()
    if picture.shape[2] == 1:
        axis.imshow(picture[..., 0], cmap="gray", vmin=0, vmax=1)
    else:
        axis.imshow(picture.clip(0, 1))
    axis.axis("off")


def small_grid(count: int, cell: float) -> tuple[plt.Figure, list]:
    """A figure of `count` square cells, 8 to a row, axes hidden; returns the first `count` axes."""
    columns = min(8, count)
    rows = (count + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(columns * cell, rows * cell + 0.5),
                                squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    return figure, list(axes.flat)[:count]


def measured(history: list[dict[str, float]], key: str) -> bool:
    """Whether an epoch of the history measured `key` (NaN: not measured that epoch)."""
    return any(key in row and not math.isnan(row[key]) for row in history)
