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
