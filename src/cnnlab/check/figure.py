"""label_issues.png: the likely label errors of lowest label quality side by side, each with its
file, the label it has, the label the check suggests and its label quality, so a person can judge
them at a glance (check.html has more of them, check.csv all)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..base.figures import figure_bytes, plt
from ..data.images import convert_mode, is_grayscale
from .findings import CheckResult, Finding
from .page import picture

SHOWN = 24
CELL = 192  # pixels a side an image is brought to, about its cell in the figure
NAME_CHARACTERS = 30  # about what a cell holds on one line of its caption


def label_issues_figure(result: CheckResult) -> bytes | None:
    """The PNG's bytes, or None where the check found no label issue."""
    worst = [f for f in result.findings if f.kind == "label-issue"][:SHOWN]
    if not worst:
        return None
    total = result.summary["counts"]["label-issue"]
    title = (f"{result.data}: likely label errors, lowest label quality first"
             + (f" (the worst {len(worst)} of {total})" if total > len(worst) else ""))
    return picture_grid([_pixels(picture(result, f.index)) for f in worst],
                        [_caption(f) for f in worst], title)


def _caption(finding: Finding) -> str:
    return (f"{_short(finding.file)}\ngiven: {finding.label}\nsuggested: {finding.suggested}\n"
            f"label quality {finding.score:.3f}")


def _short(name: str) -> str:
    """The end of a long path, where the file's own name is."""
    return name if len(name) <= NAME_CHARACTERS else "..." + name[-(NAME_CHARACTERS - 3):]


def _pixels(image: Image.Image | None) -> np.ndarray | None:
    """(H, W) gray or (H, W, 3) colour uint8, about CELL pixels a side: large photos scaled down
    smoothly, small images scaled up by a whole factor with every pixel a square."""
    if image is None:
        return None
    image = convert_mode(image, 1 if is_grayscale(image) else 3)
    if max(image.size) > CELL:
        image.thumbnail((CELL, CELL), Image.Resampling.LANCZOS)
    elif max(image.size) <= CELL // 2:
        factor = CELL // max(image.size)
        image = image.resize((image.width * factor, image.height * factor),
                             Image.Resampling.NEAREST)
    return np.asarray(image)


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
    for axis, shown, caption in zip(axes.flat, pictures, captions, strict=False):
        if shown is None:
            axis.text(0.5, 0.5, "unreadable", ha="center", va="center", color="firebrick")
        elif shown.ndim == 2:
            axis.imshow(shown, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        else:
            axis.imshow(shown, interpolation="nearest")
        axis.set_title(caption, fontsize=8, loc="left")
    figure.suptitle(title, fontsize=11)
    return figure_bytes(figure)
