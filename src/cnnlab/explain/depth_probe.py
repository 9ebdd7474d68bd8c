"""How much each depth of a network knows of the classes: a linear probe on each depth's pooled
features (Alain & Bengio, "Understanding intermediate layers using linear classifier probes"),
its accuracy on images it was not fitted on plotted against depth. It is the measurable form of
"deeper layers capture higher-level features": a depth whose features a linear map separates by
class has already done the work the classes need.

The probe is the one `cnnlab train --freeze backbone` fits (train.linear_probe: multinomial
logistic regression, C as scikit-learn defines it), on each depth's maps averaged over their
positions, standardised with the training images' statistics. C is chosen on the validation
split; the figure reported is the validation accuracy at that C (no refit: the validation images
stay out of the fit). Choosing C on those images lifts the number a little above what fresh
images would give, by the same rule at every depth and for every model, so the curves compare.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..base.errors import CnnlabError
from ..base.figures import plt, save_figure
from ..data.splits import Split
from ..models import Classifier, create_model
from ..models.modes import eval_mode
from ..models.pretrained import TIMM_PREFIX
from ..run.contract import ModelCard
from ..run.inference import first_inputs, inference_batch, output_layer
from ..train import linear_probe
from .layers import LayerInfo, conv_activations, forward_hooks, list_layers
from .maps import default_map_layers, spread

# The output layer's input: the features the trained head itself reads.
PENULTIMATE = "penultimate"

Features = dict[str, tuple[torch.Tensor, torch.Tensor]]  # layer -> (features (N, C), labels (N,))


@dataclass(frozen=True)
class DepthScore:
    """One depth's probe: what it was fitted on and how it did."""

    layer: str
    depth: int  # the layer's place among the network's depths, 0 the first (see depth_layers)
    features: int
    c: float  # the penalty chosen on the validation split (scikit-learn's C)
    train_acc: float
    val_acc: float  # on the validation split, at the chosen C
    classes: int


# ---------------------------------------------------------------- which layers


def _module_of(names: list[str]) -> str:
    """The module a group of parameters belongs to: their deepest common module where that is not
    the whole network (a block: its output is the residual stream, skip connection included),
    else the module of the group's last parameter (a stem's or head's norm-and-activation)."""
    parts = [name.split(".")[:-1] for name in names]
    common = []
    for level in zip(*parts, strict=False):
        if len(set(level)) > 1:
            break
        common.append(level[0])
    return ".".join(common) if common else ".".join(parts[-1])


def _timm_groups(network: nn.Module, coarse: bool) -> list[list[str]]:
    from timm.models import group_parameters

    groups = group_parameters(network, network.group_matcher(coarse=coarse))
    return [groups[key] for key in sorted(groups)]


@torch.no_grad()
def _shaped(model: nn.Module, modules: dict[str, nn.Module],
            input_shape: tuple[int, int, int]) -> list[LayerInfo]:
    """The modules whose output is maps (C, H, W), as LayerInfo, in the order given."""
    outputs: dict[str, torch.Tensor] = {}
    device = next(model.parameters()).device
    with eval_mode(model), forward_hooks(modules, outputs):
        model(torch.zeros(1, *input_shape, device=device))
    return [LayerInfo(name, module, type(module).__name__, tuple(outputs[name].shape[1:]))
            for name, module in modules.items()
            if name in outputs and outputs[name].ndim == 4]


def _timm_depths(model: Classifier, input_shape: tuple[int, int, int]
                 ) -> tuple[list[LayerInfo], list[LayerInfo]]:
    """A timm network's depths, from timm's own grouping of it (the one its layer-wise
    learning-rate decay uses): the stem, every block, the head's conv; and the stage ends among
    them (the last depth of each coarse group), the default. Blocks rather than the convs inside
    them: a conv inside a residual block misses the skip connection the next block receives."""
    network = model.network
    modules = dict(model.named_modules())
    fine = [f"network.{_module_of(group)}" for group in _timm_groups(network, coarse=False)]
    ends = {group[-1] for group in _timm_groups(network, coarse=True)}
    last_of = {f"network.{_module_of(group)}": group[-1]
               for group in _timm_groups(network, coarse=False)}
    depths = _shaped(model, {name: modules[name] for name in fine}, input_shape)
    return depths, [layer for layer in depths if last_of[layer.name] in ends]


def _all_depths(model: nn.Module, input_shape: tuple[int, int, int]
                ) -> tuple[list[LayerInfo], list[LayerInfo]]:
    """Every depth that could be probed, and the default choice among them."""
    if hasattr(getattr(model, "network", None), "group_matcher"):
        return _timm_depths(model, input_shape)
    layers = list_layers(model, input_shape)
    return conv_activations(layers), default_map_layers(layers)


def _penultimate(model: nn.Module) -> LayerInfo | None:
    try:
        head = output_layer(model)
    except CnnlabError:
        return None
    return LayerInfo(PENULTIMATE, head, f"input of {type(head).__name__}", (head.in_features,))


@torch.no_grad()
def _same_as_penultimate(model: nn.Module, last: LayerInfo,
                         input_shape: tuple[int, int, int]) -> bool:
    """Whether the head reads the last map layer through a global average pool alone (timm's
    networks do): then the penultimate features are that depth again, not a depth of their own."""
    device = next(model.parameters()).device
    images = torch.rand(2, *input_shape, generator=torch.Generator().manual_seed(0)).to(device)
    with eval_mode(model):
        features = _pooled_pass(model, [last, _penultimate(model)], images)
    pooled, head = features[last.name], features[PENULTIMATE]
    return pooled.shape == head.shape and torch.allclose(pooled, head, rtol=1e-4, atol=1e-5)


def depth_layers(model: nn.Module, input_shape: tuple[int, int, int],
                 most: int | None = None) -> list[LayerInfo]:
    """The depths to probe, in forward order, ending with the penultimate features (the output
    layer's input) where they are a depth of their own.

    Default: the first conv's activation and the end of each stage (timm networks: timm's stages;
    others: what explain's feature maps show, default_map_layers). With `most`, up to that many
    depths spread evenly over all of them (the stem, every block, the head's conv for timm).
    """
    depths, default = _all_depths(model, input_shape)
    if not depths:
        raise CnnlabError("this model has no convolutional layer to probe")
    if most is not None and most < 2:
        raise CnnlabError(f"a depth curve needs at least 2 depths, not {most}")
    chosen = default if most is None else spread(depths, most)
    penultimate = _penultimate(model)
    if penultimate is not None and not _same_as_penultimate(model, depths[-1], input_shape):
        chosen = [*chosen, penultimate]
    return chosen


def depth_index(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, int]:
    """Each probable layer's depth: its place among all of the network's depths (0 the first),
    the penultimate features one past the last."""
    depths, _ = _all_depths(model, input_shape)
    return {**{layer.name: index for index, layer in enumerate(depths)}, PENULTIMATE: len(depths)}


# ---------------------------------------------------------------- features


@contextmanager
def _input_hook(module: nn.Module, store: dict[str, torch.Tensor], name: str) -> Iterator[None]:
    """Record the input a module receives (the head's features), released after the block."""
    handle = module.register_forward_pre_hook(
        lambda _module, inputs: store.__setitem__(name, inputs[0].detach()))
    try:
        yield
    finally:
        handle.remove()


def _pooled_pass(model: nn.Module, layers: list[LayerInfo],
                 images: torch.Tensor) -> dict[str, torch.Tensor]:
    """One forward pass of float images (B, C, H, W): each layer's output pooled to (B, C)."""
    maps = [layer for layer in layers if layer.name != PENULTIMATE]
    outputs: dict[str, torch.Tensor] = {}
    head = next((layer for layer in layers if layer.name == PENULTIMATE), None)
    with forward_hooks({layer.name: layer.module for layer in maps}, outputs), \
            (_input_hook(head.module, outputs, PENULTIMATE) if head else _no_hook()):
        model(images)
    # Global average pooling: one number per channel, whatever the resolution, so every depth
    # gets a vector of its width (16 to 1,280) rather than 200,000 positions, and the probe asks
    # what a channel responds to, not where (as the network's own head does). Max pooling would
    # keep one position's response per channel, noisier across images.
    return {name: (out.float().mean((2, 3)) if out.ndim == 4 else out.float().flatten(1)).cpu()
            for name, out in outputs.items()}


@contextmanager
def _no_hook() -> Iterator[None]:
    yield


@torch.no_grad()
def depth_features(model: nn.Module, split: Split, layers: list[LayerInfo], *,
                   limit: int | None = None, device: torch.device | None = None,
                   channels_last: bool = False,
                   advance: Callable[[int], None] | None = None) -> Features:
    """Each layer's maps, averaged over positions, for the first `limit` images of `split` (all
    by default): {layer name: (features (N, C) float32, labels (N,))}, from one streaming pass
    with every layer hooked at once (eval mode; the mode is restored)."""
    device = device or next(model.parameters()).device
    limit = len(split) if limit is None else min(limit, len(split))
    pooled: dict[str, list[torch.Tensor]] = {layer.name: [] for layer in layers}
    labels = []
    with eval_mode(model):
        for inputs, targets in first_inputs(split, limit, inference_batch(split), device,
                                            channels_last, advance):  # (B, C, H, W)
            for name, features in _pooled_pass(model, layers, inputs).items():
                pooled[name].append(features)
            labels.append(targets)
    if not sum(len(batch) for batch in labels):
        raise CnnlabError("the split has no images to probe")
    every = torch.cat(labels)
    return {name: (torch.cat(chunks), every) for name, chunks in pooled.items()}


# ---------------------------------------------------------------- the probe


def standardize(train: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each feature to zero mean and unit variance on the training vectors (scikit-learn's
    StandardScaler: a constant feature is only centred), the same shift and scale for the others.
    The penalty C acts on the weights' size, so without this one C path would mean a weak
    penalty for a depth of small activations and a strong one for a depth of large ones."""
    mean = train.double().mean(0)
    std = train.double().std(0, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return tuple(((x.double() - mean) / std).float() for x in (train, *others))


def probe_scores(train: Features, val: Features, num_classes: int, depths: dict[str, int], *,
                 standardized: bool = True, c_path: tuple[float, ...] | None = None
                 ) -> list[DepthScore]:
    """The linear probe on each layer's features: fitted on `train`, C chosen on `val`."""
    scores = []
    for position, (name, (features, labels)) in enumerate(train.items()):
        val_features, val_labels = val[name]
        if standardized:
            features, val_features = standardize(features, val_features)
        options = {"c_path": c_path} if c_path else {}
        probe = linear_probe((features, labels), (val_features, val_labels), num_classes,
                             refit=False, **options)
        chosen = probe.chosen
        scores.append(DepthScore(name, depths.get(name, position), features.shape[1], probe.c,
                                 chosen.train_acc, chosen.val_acc, num_classes))
    return scores


def depth_probe(model: nn.Module, train: Split, val: Split | None,
                layers: list[LayerInfo] | None = None, *, most: int | None = None,
                limit: int | None = None, device: torch.device | None = None,
                channels_last: bool = False, standardized: bool = True,
                advance: Callable[[int], None] | None = None) -> list[DepthScore]:
    """Per depth, the linear probe's accuracy: fitted on `train`'s pooled features, C chosen on
    `val`, the accuracy reported that of `val` at the chosen C (see the module's docstring).
    `layers` default to depth_layers(model, ..., most); `limit` caps the images of each split."""
    if val is None or not len(val):
        raise CnnlabError("the depth probe chooses its penalty on a validation split and "
                          "reports its accuracy there; this run's data has none (train with "
                          "--val-fraction 0.1)")
    input_shape = _input_shape(train)
    layers = layers if layers is not None else depth_layers(model, input_shape, most)
    found = {name: depth_features(model, split, layers, limit=limit, device=device,
                                  channels_last=channels_last, advance=advance)
             for name, split in (("train", train), ("val", val))}
    classes = _classes(model, found["train"])
    return probe_scores(found["train"], found["val"], classes,
                        depth_index(model, input_shape), standardized=standardized)


def _input_shape(split: Split) -> tuple[int, int, int]:
    """The images' (C, H, W), without decoding one (a file split knows the size it resizes to)."""
    return tuple(split.images.shape[1:]) if hasattr(split, "images") else tuple(split.shape)


def _classes(model: nn.Module, features: Features) -> int:
    try:
        return output_layer(model).out_features
    except CnnlabError:
        labels = next(iter(features.values()))[1]
        return int(labels.max()) + 1


def pretrained_counterpart(card: ModelCard) -> Classifier | None:
    """The network a fine-tuned run started from: its architecture with ImageNet's weights (and a
    new, zero head), built as training built it (offline for EfficientNet-Lite0), in eval mode.
    None for a network not started from ImageNet."""
    if not (card.pretrained and card.architecture.startswith(TIMM_PREFIX)):
        return None
    model, _, _ = create_model(card.architecture, input_shape=card.input.shape,
                               num_classes=card.num_classes, mean=card.preprocessing.mean,
                               std=card.preprocessing.std, pretrained=True)
    return model.eval()


# ---------------------------------------------------------------- the figure


def _short(name: str) -> str:
    return name.removeprefix("network.")


def depth_probe_figure(curves: dict[str, list[DepthScore]], path: Path, title: str) -> None:
    """Validation accuracy against depth, one line per model, chance drawn. Curves of one
    architecture share an axis of layer names; of several, depth runs from the first conv (0)
    to the penultimate features (1)."""
    shared = len({tuple(s.layer for s in scores) for scores in curves.values()}) == 1
    figure, axis = plt.subplots(figsize=(8, 4.5), layout="constrained")
    for label, scores in curves.items():
        last = max(s.depth for s in scores) or 1
        x = [s.depth if shared else s.depth / last for s in scores]
        axis.plot(x, [s.val_acc for s in scores], marker="o", label=label)
    classes = next(iter(curves.values()))[0].classes
    axis.axhline(1 / classes, color="gray", linestyle="--", label=f"chance (1/{classes})")
    if shared:
        scores = next(iter(curves.values()))
        axis.set_xticks([s.depth for s in scores], [_short(s.layer) for s in scores],
                        rotation=40, ha="right", fontsize=8)
        axis.set_xlabel("depth (layer)")
    else:
        axis.set_xlabel("depth (0: first conv layer, 1: penultimate features)")
    axis.set_ylim(0, 1.02)
    axis.set_ylabel("linear probe accuracy (validation)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    axis.set_title(title)
    save_figure(figure, path)
