"""What excites each depth of a network (Zeiler and Fergus, 2014): for a layer's most active
channels, the input patches, across a data split, under the units that respond most strongly.

One forward pass over the split, hooks on every chosen layer at once, and only running top-k lists
kept (the k best images per channel of every layer): memory does not grow with the split's size.
A second, read-only pass picks up the few images whose patches are shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..base.errors import CnnlabError
from ..base.figures import plt, save_figure
from ..data.images import to_float
from ..data.splits import Split
from ..models.modes import eval_mode
from ..run.inference import inference_batch
from .layers import LayerInfo, forward_hooks
from .receptive import Corners, ReceptiveField, receptive_fields

# Zeiler and Fergus show 9 per feature map; six rows of six keep one layer's figure readable.
CHANNELS, PATCHES, LIMIT = 6, 6, 2000


@dataclass(frozen=True)
class Patch:
    """The input under one output unit: where it is, and how strongly the unit responded."""

    pixels: torch.Tensor  # uint8 (C, h, w): the image under the unit's field, clipped to the image
    box: Corners  # (top, left, bottom, right) in the image's pixels, bottom and right exclusive
    image: int  # the image's index in the split
    file: Path | None  # the image's file, where the split came from files
    unit: tuple[int, int]  # (y, x) of the unit in the layer's map
    activation: float

    @property
    def source(self) -> str:
        """What to call the image: its file's name after its folder's (a class folder: files of
        different classes share names), else its number in the split."""
        if self.file is None:
            return f"image {self.image}"
        return f"{self.file.parent.name}/{self.file.name}" if self.file.parent.name else self.file.name


@dataclass(frozen=True)
class ChannelPatches:
    channel: int
    mean_activation: float  # over every unit of every image scanned
    patches: list[Patch]  # strongest first, each from a different image


@dataclass(frozen=True)
class LayerPatches:
    layer: str
    receptive_field: ReceptiveField
    channels: list[ChannelPatches]  # highest mean activation first
    images: int  # how many images were scanned

    @property
    def size(self) -> int:
        """The receptive field's side in input pixels."""
        return self.receptive_field.size


class _RunningTop:
    """One layer's statistics over the images seen so far, in O(channels * k) memory: the sum of
    each channel's mean activation, and each channel's k strongest images with the position of
    their strongest unit.

    One position per image (each image's maximum of the channel, as Zeiler and Fergus took): the
    k best are then k different images, not k neighbouring units of one image, which would show
    one object k times, shifted by a pixel."""

    def __init__(self, k: int) -> None:
        self.k, self.seen = k, 0
        self.sums: torch.Tensor | None = None  # (C,)
        self.values = self.images = self.positions = None  # (<=k, C) each

    def add(self, output: torch.Tensor) -> None:
        maps = output.float().flatten(2)  # (B, C, H*W)
        values, positions = maps.max(2)  # (B, C): each image's strongest unit per channel
        images = torch.arange(self.seen, self.seen + len(maps), device=maps.device)
        images = images[:, None].expand_as(values)
        sums = maps.mean(2).sum(0)
        if self.values is not None:
            values, images = torch.cat([self.values, values]), torch.cat([self.images, images])
            positions = torch.cat([self.positions, positions])
            sums = sums + self.sums
        best = values.topk(min(self.k, len(values)), dim=0).indices  # (k, C)
        self.values, self.images = values.gather(0, best), images.gather(0, best)
        self.positions, self.sums = positions.gather(0, best), sums
        self.seen += len(maps)


def _scan(model: nn.Module, split: Split, layers: list[LayerInfo], k: int, limit: int,
          batch: int, device: torch.device,
          advance: Callable[[int], None] | None) -> dict[str, _RunningTop]:
    """Each layer's running statistics over the first `limit` images."""
    tops = {layer.name: _RunningTop(k) for layer in layers}
    outputs: dict[str, torch.Tensor] = {}
    seen = 0
    with eval_mode(model), torch.no_grad(), \
            forward_hooks({layer.name: layer.module for layer in layers}, outputs):
        for images, _ in split.batches(batch):
            images = images[: limit - seen]
            model(to_float(images.to(device)))
            for name, top in tops.items():
                top.add(outputs[name])  # (B, C, H, W)
            seen += len(images)
            if advance is not None:
                advance(len(images))
            if seen >= limit:
                break
    if not seen:
        raise CnnlabError("the split has no images to look for patches in")
    return tops


def _images(split: Split, wanted: set[int], batch: int) -> dict[int, torch.Tensor]:
    """The uint8 (C, H, W) images of the split at the indices `wanted`, in the order batches()
    gives them (the order the scan numbered them in)."""
    if hasattr(split, "images"):  # in memory: no pass needed
        return {index: split.images[index] for index in wanted}
    found, start = {}, 0
    for images, _ in split.batches(batch):
        for index in wanted & set(range(start, start + len(images))):
            found[index] = images[index - start].clone()
        start += len(images)
        if len(found) == len(wanted):
            break
    return found


def _channel(top: _RunningTop, channel: int, field: ReceptiveField, width: int,
             images: dict[int, torch.Tensor], paths: list[Path] | None) -> ChannelPatches:
    patches = []
    for value, image, position in zip(top.values[:, channel].tolist(),
                                      top.images[:, channel].tolist(),
                                      top.positions[:, channel].tolist(), strict=True):
        y, x = divmod(position, width)
        pixels = images[image]
        box = field.box(y, x, pixels.shape[1], pixels.shape[2])
        patches.append(Patch(pixels[:, box[0]:box[2], box[1]:box[3]].clone(), box, image,
                             paths[image] if paths is not None else None, (y, x), value))
    return ChannelPatches(channel, float(top.sums[channel]) / top.seen, patches)


def top_patches(model: nn.Module, split: Split, layers: list[LayerInfo], *,
                channels: int = CHANNELS, patches: int = PATCHES, limit: int = LIMIT,
                batch: int | None = None, device: torch.device | str | None = None,
                advance: Callable[[int], None] | None = None) -> list[LayerPatches]:
    """For each layer (one that outputs maps, e.g. from default_map_layers): its `channels`
    channels of highest mean activation over the first `limit` images of `split`, and for each
    the input patches under the `patches` units of strongest activation, from different images.

    Args:
        model: the network, fed float images in [0, 1] (a Classifier normalizes them itself).
        split: the images, uint8 at the model's input size (a run's test or val split).
        layers: LayerInfos from list_layers.
        batch: images per forward pass (default: as inference_batch sizes them).
        device: where the images go (default: where the model's parameters are, as they must).
        advance: told of each batch's number of images (a progress bar).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    batch = batch or inference_batch(split)
    shape = tuple(split.images.shape[1:]) if hasattr(split, "images") else tuple(split.shape)
    fields = receptive_fields(model, shape, layers)  # first: a layer without one stops here
    tops = _scan(model, split, layers, patches, max(1, limit), batch, device, advance)
    chosen = {layer.name: tops[layer.name].sums.topk(min(channels, len(tops[layer.name].sums)))
              .indices.tolist() for layer in layers}
    wanted = {int(image) for layer in layers for channel in chosen[layer.name]
              for image in tops[layer.name].images[:, channel].tolist()}
    images = _images(split, wanted, batch)
    return [LayerPatches(layer.name, fields[layer.name],
                         [_channel(tops[layer.name], channel, fields[layer.name],
                                   layer.output_shape[2], images, split.paths)
                          for channel in chosen[layer.name]],
                         tops[layer.name].seen)
            for layer in layers]


def _canvas(patch: Patch, field: ReceptiveField, height: int, width: int) -> torch.Tensor:
    """The patch (C, h, w) as float (H', W', C) on a gray square of the field's size (at most the
    image's): the part of the field past the image's edge shows gray, so the unit's centre is the
    canvas's centre wherever the field fits the image."""
    rows, columns = min(field.size, height), min(field.size, width)
    top, left = patch.box[0], patch.box[1]
    first_top, first_left = (field.start + patch.unit[0] * field.jump,
                             field.start + patch.unit[1] * field.jump)
    _, h, w = patch.pixels.shape
    down, right = min(top - first_top, rows - h), min(left - first_left, columns - w)
    canvas = torch.full((patch.pixels.shape[0], rows, columns), 0.5)
    canvas[:, down:down + h, right:right + w] = to_float(patch.pixels)
    return canvas.permute(1, 2, 0)


def _caption(source: str, width: int = 22) -> str:
    """A patch's image name in cells 22 characters wide: a long one on two lines, folder first,
    each cut from the front (the file's own name is at the end)."""
    if len(source) <= width:
        return source
    folder, _, name = source.rpartition("/")
    return "\n".join(part if len(part) <= width else "…" + part[1 - width:]
                     for part in ([f"{folder}/", name] if folder else [name]))


def patches_figure(layer_patches: LayerPatches, path: Path, title: str,
                   image_size: tuple[int, int] | None = None) -> None:
    """One row per channel, its patches strongest first, each drawn at one size and named by its
    image; the receptive field's size in the title. `image_size` (H, W) of the split's images, for
    the gray margin of fields that pass the image's edge (default: the largest patch's)."""
    rows = layer_patches.channels
    columns = max((len(row.patches) for row in rows), default=1)
    every = [patch for row in rows for patch in row.patches]
    height, width = image_size or (max((p.pixels.shape[1] for p in every), default=1),
                                   max((p.pixels.shape[2] for p in every), default=1))
    figure, axes = plt.subplots(max(1, len(rows)), columns, figsize=(1.45 * columns,
                                                                     1.55 * len(rows) + 0.6),
                                squeeze=False, layout="constrained")
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_frame_on(False)
    for axes_row, row in zip(axes, rows, strict=False):
        axes_row[0].set_ylabel(f"ch {row.channel}\nmean {row.mean_activation:.2g}", fontsize=7)
        for axis, patch in zip(axes_row, row.patches, strict=False):
            canvas = _canvas(patch, layer_patches.receptive_field, height, width).numpy()
            gray = canvas.shape[2] == 1
            axis.imshow(canvas[..., 0] if gray else canvas, cmap="gray" if gray else None,
                        vmin=0, vmax=1, interpolation="nearest")
            axis.set_title(f"{_caption(patch.source)}\n{patch.activation:.3g}", fontsize=6)
    size = layer_patches.size
    figure.suptitle(f"{title}: receptive field {size}x{size} px, top channels of "
                    f"{layer_patches.images} images", fontsize=9)
    save_figure(figure, path)
