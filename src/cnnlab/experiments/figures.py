"""`cnnlab compare`'s figure: the learning curves of several runs overlaid."""

from __future__ import annotations

from pathlib import Path

from ..base.figures import integer_epochs, measured, plt, save_figure


def compared_curves(runs: list[tuple[str, list[dict[str, float]]]], path: Path) -> None:
    """The learning curves of several runs overlaid: loss and accuracy (%) per epoch, one colour
    per run, validation solid and training dashed."""
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    for number, (name, history) in enumerate(runs):
        colour, epochs = f"C{number % 10}", [row["epoch"] for row in history]
        for axis, key, scale in ((loss_axis, "loss", 1), (acc_axis, "acc", 100)):
            axis.plot(epochs, [scale * row[f"train_{key}"] for row in history], "--",
                      color=colour, alpha=0.7, label=f"{name} train")
            if measured(history, f"val_{key}"):
                axis.plot(epochs, [scale * row[f"val_{key}"] for row in history], "o-",
                          color=colour, markersize=3, label=f"{name} validation")
    loss_axis.set_title("loss")
    acc_axis.set_title("accuracy (%)")
    for axis in (loss_axis, acc_axis):
        integer_epochs(axis)
    acc_axis.legend(fontsize=7, loc="lower right")
    save_figure(figure, path)
