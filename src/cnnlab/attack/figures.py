"""`cnnlab attack`'s figures: robust accuracy against epsilon, adversarial examples."""

from __future__ import annotations

from pathlib import Path

from ..base.figures import plt, save_figure


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
