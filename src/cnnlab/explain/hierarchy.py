"""`cnnlab explain RUN --method hierarchy`: what each depth of the network has learned, across the
data rather than for one image. Per depth, from the first conv layer to the last: the channels
that fire most and the training patches that excite them (with the receptive field's size), a
picture of each made by optimisation, and a linear probe on the depth's pooled features, whose
accuracy against depth is the measurable form of "deeper layers capture higher-level features"
(for a fine-tuned network, beside the pretrained one it started from).

Everything goes to RUN/explain/hierarchy/: the figures and hierarchy.json (explain.record)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..base.progress import tracked
from ..data.splits import Split
from ..run.data import run_dataset
from ..run.predictor import Predictor
from .depth_probe import DepthScore, depth_layers, depth_probe, depth_probe_figure, pretrained_counterpart
from .layers import LayerInfo, find_layer, list_layers
from .maps import default_map_layers
from .patches import LayerPatches, top_patches
from .patches import patches_figure as draw_patches
from .record import ChannelFinding, DepthFinding, HierarchyRecord, ProbePoint
from .visualize import ChannelPicture, channel_pictures, pictures_figure, reference_activations

HIERARCHY_FOLDER = "hierarchy"
log = logging.getLogger("cnnlab")
PICTURED_CHANNELS = 4  # of each depth's top channels, the ones drawn by optimisation
THIS_RUN, BEFORE = "this run", "pretrained, before fine-tuning"


def _file_stem(name: str) -> str:
    return name.removeprefix("network.").replace(".", "-")


def _unclipped(layers: list[LayerInfo], layer: LayerInfo) -> LayerInfo:
    """The layer before a clipping activation (ReLU6, as EfficientNet-Lite has): at its ceiling of
    6 a channel's strongest units tie, so the ranking of patches would be arbitrary and the
    optimisation would stop at the ceiling. The same maps before the clip keep their order."""
    index = layers.index(layer)
    if isinstance(layer.module, nn.Hardtanh) and index > 0 and \
            layers[index - 1].output_shape == layer.output_shape:
        return layers[index - 1]
    return layer


def _layers(predictor: Predictor, layer: str | None) -> list[LayerInfo]:
    """The depths shown: the first conv layer and the end of each stage (as feature maps are),
    or the one --layer names."""
    layers = list_layers(predictor.model, predictor.input_shape)
    chosen = [find_layer(layers, layer)] if layer else default_map_layers(layers)
    return [_unclipped(layers, info) for info in chosen]


def _top_images(split: Split, found: LayerPatches) -> torch.Tensor:
    """The float images (N, C, H, W) the layer's top patches come from: what a channel's picture
    must beat (its strongest real images)."""
    from ..data.images import to_float

    indices = sorted({patch.image for channel in found.channels for patch in channel.patches})
    chosen = split.subset(torch.tensor(indices))
    return torch.cat([to_float(images) for images, _ in chosen.batches(len(indices))])


def _pictures(predictor: Predictor, layers: list[LayerInfo], patches: list[LayerPatches],
              split: Split, quiet: bool) -> dict[str, list[ChannelPicture]]:
    pictures = {}
    with tracked("pictures by optimisation (depths)", len(layers), quiet=quiet) as advance:
        for layer, found in zip(layers, patches, strict=True):
            channels = [channel.channel for channel in found.channels[:PICTURED_CHANNELS]]
            images = _top_images(split, found).to(predictor.device)
            reference = reference_activations(predictor.model, layer, channels, images)
            pictures[layer.name] = channel_pictures(predictor.model, layer, channels,
                                                    predictor.input_shape, reference=reference)
            advance(1)
    return pictures


def _probe(predictor: Predictor, train: Split, val: Split | None, limit: int,
           quiet: bool) -> dict[str, list[DepthScore]]:
    """Each depth's probe, for this run's network and, where it was fine-tuned from ImageNet's
    weights, for the network it started from."""
    if val is None or not len(val):
        log.warning("no validation split, so no depth probe (its penalty is chosen there and its "
                    "accuracy measured there): train with --val-fraction 0.1 to have one")
        return {}
    networks = {THIS_RUN: predictor.model}
    before = pretrained_counterpart(predictor.card)
    if before is not None:
        networks[BEFORE] = before.to(predictor.device)
    curves = {}
    for name, model in networks.items():
        layers = depth_layers(model, predictor.input_shape)
        total = min(limit, len(train)) + (min(limit, len(val)) if val is not None else 0)
        with tracked(f"depth probe ({name})", total, quiet=quiet) as advance:
            curves[name] = depth_probe(model, train, val, layers, limit=limit,
                                       device=predictor.device, advance=advance)
    return curves


def _finding(found: LayerPatches, depth: int,
             pictures: list[ChannelPicture]) -> DepthFinding:
    judged = {picture.channel: "readable" if picture.readable else picture.reason
              for picture in pictures}
    return DepthFinding(found.layer, depth, found.size, tuple(
        ChannelFinding(channel.channel, round(channel.mean_activation, 6),
                       tuple(patch.source for patch in channel.patches),
                       judged.get(channel.channel))
        for channel in found.channels))


def _points(curves: dict[str, list[DepthScore]]) -> tuple[ProbePoint, ...]:
    return tuple(ProbePoint(network, score.layer, score.depth, score.features, score.c,
                            round(score.train_acc, 6), round(score.val_acc, 6))
                 for network, scores in curves.items() for score in scores)


def hierarchy(predictor: Predictor, run: Path, layer: str | None, limit: int, quiet: bool,
              out: Path) -> tuple[HierarchyRecord, dict[str, np.ndarray], list[Path]]:
    """Run the four views on a run's training images; returns the record (also written to
    out/hierarchy.json), arrays for Python and the figures written."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    data = run_dataset(run, predictor.card)
    layers = _layers(predictor, layer)
    with tracked("top patches", min(limit, len(data.train)), quiet=quiet) as advance:
        patches = top_patches(predictor.model, data.train, layers, limit=limit,
                              device=predictor.device, advance=advance)
    figures = []
    for depth, found in enumerate(patches, 1):
        path = out / f"patches-{depth}-{_file_stem(found.layer)}.png"
        draw_patches(found, path, f"depth {depth}: {found.layer.removeprefix('network.')}",
                     image_size=predictor.input_shape[1:])
        figures.append(path)
    pictures = _pictures(predictor, layers, patches, data.train, quiet)
    figures.append(out / "pictures.png")
    pictures_figure(pictures, figures[-1], f"{run.name}: the input each channel likes best "
                                           f"(by optimisation)")
    curves = _probe(predictor, data.train, data.val, limit, quiet)
    if curves:
        figures.append(out / "depth-probe.png")
        depth_probe_figure(curves, figures[-1], f"{run.name} on {data.name}: what each depth "
                                                f"knows of the classes")
    record = HierarchyRecord(
        run.name, data.name, patches[0].images if patches else 0,
        tuple(_finding(found, depth, pictures[found.layer])
              for depth, found in enumerate(patches, 1)),
        _points(curves), tuple(path.name for path in figures),
        round(time.perf_counter() - started, 1))
    record.write(out)
    arrays = {f"probe/{network}": np.array([score.val_acc for score in scores])
              for network, scores in curves.items()}
    arrays |= {f"pictures/{name}": torch.stack([p.image for p in found]).numpy()
               for name, found in pictures.items()}
    return record, arrays, figures
