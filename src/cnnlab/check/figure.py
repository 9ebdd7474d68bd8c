"""label_issues.png: the likely label errors of lowest label quality side by side, each with its
file, the label it has, the label the check suggests and its label quality, so a person can judge
them at a glance (check.html has more of them, check.csv all)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..base.plots import picture_grid
from ..data.images import convert_mode, is_grayscale
from .findings import CheckResult, Finding
from .page import picture

LABEL_ISSUES_FIGURE = "label_issues.png"
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
