"""Training's figures: the learning curves of a run and the learning-rate range test's curve."""

from __future__ import annotations

from pathlib import Path

from ..base.figures import integer_epochs, measured, plt, save_figure


def training_curves(history: list[dict[str, float]], path: Path, *, best_epoch: int | None = None,
                    label_smoothing: float = 0.0, adversarial: bool = False) -> None:
    """Loss, accuracy (%) and learning rate per epoch, train beside validation, the best epoch
    marked. The training loss is what training minimized (label smoothing included, on attacked
    batches under adversarial training); the validation loss is plain cross-entropy."""
    epochs = [row["epoch"] for row in history]
    train = "train (attacked batches)" if adversarial else "train"
    panels = 3 if measured(history, "lr") else 2
    figure, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 4), layout="constrained")
    loss_axis, acc_axis = axes[0], axes[1]
    smoothing = f", with label smoothing {label_smoothing:g}" if label_smoothing else ""
    loss_axis.plot(epochs, [row["train_loss"] for row in history], "o-", label=train + smoothing)
    acc_axis.plot(epochs, [100 * row["train_acc"] for row in history], "o-", label=train)
    if measured(history, "val_loss"):
        loss_axis.plot(epochs, [row["val_loss"] for row in history], "o-", label="validation")
        acc_axis.plot(epochs, [100 * row["val_acc"] for row in history], "o-", label="validation")
    if measured(history, "val_robust_acc"):
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
        integer_epochs(axis)
        if best_epoch:
            axis.axvline(best_epoch, linestyle=":", color="green", label=f"best epoch ({best_epoch})")
    loss_axis.legend(fontsize=8)
    acc_axis.legend(fontsize=8)
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
