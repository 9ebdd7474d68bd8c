"""`cnnlab explain`'s figures: attribution maps over their images, feature maps, filters, the
embedding map."""

from __future__ import annotations

from pathlib import Path

from ..base.figures import plt, save_figure, show_image, small_grid

# Attribution maps: perceptually uniform (equal steps look equal), unlike jet, whose bright bands
# invent edges that are not in the map.
ATTRIBUTION_COLORMAP = "inferno"


def heatmap_overlay(image, heatmap, title: str, path: Path, peak: float | None = None,
                    box: tuple[int, int, int, int] | None = None) -> None:
    """The input beside the heatmap laid over it, with a colorbar. `peak`: the value at the top of
    the scale (one shared by several maps makes them comparable); default the map's own maximum.
    `box`: (top, left, height, width), drawn on both sides (where the map says the object is)."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(7, 3.4), layout="constrained")
    show_image(left, image)
    left.set_title("input", fontsize=9)
    show_image(right, image)
    top = peak if peak is not None else (float(heatmap.max()) or 1.0)
    shown = right.imshow(heatmap.numpy(), cmap=ATTRIBUTION_COLORMAP, alpha=0.6, vmin=0, vmax=top)
    figure.colorbar(shown, ax=right, shrink=0.8,
                    label="attribution" + (" (shared scale)" if peak is not None else ""))
    right.set_title("attribution", fontsize=9)
    if box is not None:
        for axis in (left, right):
            _draw_box(axis, box)
    figure.suptitle(title, fontsize=10)
    save_figure(figure, path)


def _draw_box(axis, box: tuple[int, int, int, int]) -> None:
    from matplotlib.patches import Rectangle

    top, left, height, width = box
    # pixel centres are at integers: a box of whole pixels starts half a pixel before its first
    axis.add_patch(Rectangle((left - 0.5, top - 0.5), width, height, fill=False,
                             edgecolor="cyan", linewidth=1.5))


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


def feature_map_grid(maps, title: str, path: Path, most: int = 32) -> None:
    """Up to `most` channels of one layer's activation (C, H, W), each scaled on its own."""
    count = min(most, maps.shape[0])
    figure, axes = small_grid(count, 1.3)
    for index, axis in enumerate(axes):
        axis.imshow(maps[index].numpy(), cmap="viridis")
        axis.set_title(str(index), fontsize=7)
    figure.suptitle(f"feature maps: {title}" + (f", first {count}" if count < maps.shape[0] else ""),
                    fontsize=10)
    save_figure(figure, path)


def filter_grid(weights, path: Path) -> None:
    """First-layer kernels (F, C, k, k): RGB when C is 3, else the mean over input channels."""
    count = weights.shape[0]
    figure, axes = small_grid(count, 1.1)
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
