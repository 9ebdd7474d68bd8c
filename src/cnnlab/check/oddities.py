"""Oddities: images far from every other (outliers in feature space), near-blank images, unusual
sizes, aspect ratios and colour modes, and the balance of the classes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

# cleanlab Datalab's rule for outliers by features: a mean distance to the nearest neighbours
# above Q3 + (1 / 0.37037 - 1) IQR of all of them.
OUTLIER_IQR_SCALE = 1 / 0.37037 - 1
BLANK_SPREAD = 4.0  # std of the gray levels (0..255) below which an image is near blank
SIZE_FACTOR = 3.0  # a side this many times smaller or larger than the median's is unusual
ASPECT_FACTOR = 2.0  # an aspect ratio this many times the median's (or its inverse) is unusual
IMBALANCE = 3.0  # largest class over smallest from which the classes are said to be imbalanced


@dataclass(frozen=True)
class Oddity:
    index: int
    kind: str  # "outlier" | "blank" | "size" | "aspect" | "mode"
    score: float  # how odd: larger is odder (the outlier's distance, the blank's 1 - spread/limit)
    note: str


def outliers(knn_distance: np.ndarray) -> tuple[list[Oddity], float]:
    """Images whose mean distance to their neighbours is far above the rest's; the limit used."""
    known = knn_distance[~np.isnan(knn_distance)]
    if len(known) < 4:
        return [], float("nan")
    q1, q3 = np.percentile(known, [25, 75])
    limit = float(q3 + OUTLIER_IQR_SCALE * (q3 - q1))
    found = [Oddity(int(i), "outlier", float(knn_distance[i]),
                    f"mean cosine distance to its nearest neighbours {knn_distance[i]:.3f}, the "
                    f"limit {limit:.3f}")
             for i in np.flatnonzero(knn_distance > limit)]
    return found, limit


def blanks(spread: np.ndarray, usable: np.ndarray) -> list[Oddity]:
    return [Oddity(int(i), "blank", float(1 - spread[i] / BLANK_SPREAD),
                   f"near blank: its gray levels vary by {spread[i]:.1f} of 255 (std)")
            for i in np.flatnonzero(usable & (spread < BLANK_SPREAD))]


def unusual_shapes(widths: np.ndarray, heights: np.ndarray, usable: np.ndarray) -> list[Oddity]:
    """Sides far from the median side, aspect ratios far from the median one."""
    index = np.flatnonzero(usable)
    if not len(index):
        return []
    side = np.minimum(widths[index], heights[index]).astype(float)
    aspect = widths[index] / np.maximum(heights[index], 1)
    typical_side, typical_aspect = np.median(side), np.median(aspect)
    found = []
    for i, s, a in zip(index, side, aspect, strict=True):
        size = f"{widths[i]}x{heights[i]}"
        if s < typical_side / SIZE_FACTOR or s > typical_side * SIZE_FACTOR:
            found.append(Oddity(int(i), "size", float(abs(np.log(s / typical_side))),
                                f"{size}, where the median short side is {typical_side:.0f}"))
        ratio = a / typical_aspect
        if ratio > ASPECT_FACTOR or ratio < 1 / ASPECT_FACTOR:
            found.append(Oddity(int(i), "aspect", float(abs(np.log(ratio))),
                                f"{size}: aspect {a:.2f}, the median {typical_aspect:.2f}"))
    return found


def unusual_modes(modes: list[str], usable: np.ndarray) -> tuple[list[Oddity], dict[str, int]]:
    """Images whose colour mode (L, RGB, RGBA, P, CMYK ...) differs from most images'."""
    counts = Counter(m for m, ok in zip(modes, usable, strict=True) if ok)
    if len(counts) < 2:
        return [], dict(counts)
    usual, usual_count = counts.most_common(1)[0]
    total = sum(counts.values())
    found = [Oddity(i, "mode", 1 - counts[m] / total,
                    f"colour mode {m}, where {usual_count} of {total} images are {usual}")
             for i, (m, ok) in enumerate(zip(modes, usable, strict=True)) if ok and m != usual]
    return found, dict(counts)


def class_balance(labels: np.ndarray, splits: np.ndarray, usable: np.ndarray,
                  class_names: list[str]) -> dict:
    """Images per class and split, and how uneven the training classes are."""
    table = {}
    for split in ("train", "val", "test"):
        mask = usable & (splits == split)
        if mask.any():
            counts = np.bincount(labels[mask], minlength=len(class_names))
            table[split] = {name: int(c) for name, c in zip(class_names, counts, strict=True)}
    train = np.array(list(table.get("train", {}).values()) or [0])
    ratio = float(train.max() / train.min()) if train.min() > 0 else float("inf")
    return {"counts": table, "imbalance": ratio if np.isfinite(ratio) else None,
            "imbalanced": bool(ratio >= IMBALANCE)}
