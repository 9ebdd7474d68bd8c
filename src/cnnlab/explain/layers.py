"""Finding layers in any model (layer-language networks, named networks, timm backbones) by what
they output, not by a hard-coded name; and hooks that are always released."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ..base.errors import CnnlabError, suggest
from ..models.layers import CONV_BLOCKS
from ..models.modes import eval_mode

# Residual blocks, seen as one layer: their inner convs are not a map of their own. Those of the
# layer language, and torchvision's.
_BLOCKS = (*(block.__name__ for block in CONV_BLOCKS), "BasicBlock", "Bottleneck")


@dataclass(frozen=True)
class LayerInfo:
    name: str
    module: nn.Module
    kind: str
    output_shape: tuple[int, ...]  # without the batch dimension

    @property
    def position(self) -> int | None:
        """The layer's number in `cnnlab summary` (layer-language networks only)."""
        return getattr(self.module, "layer_position", None)

    @property
    def text(self) -> str:
        """The layer as the layer language writes it, where the network was written in it."""
        return getattr(self.module, "layer_text", "")


@contextmanager
def forward_hooks(modules: dict[str, nn.Module], store: dict[str, torch.Tensor]) -> Iterator[None]:
    """Record each module's output into `store` while the block runs; hooks are removed after."""
    handles = []
    try:
        for name, module in modules.items():
            def record(_module, _inputs, output, name=name):
                store[name] = output.detach()

            handles.append(module.register_forward_hook(record))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _leaves(model: nn.Module) -> dict[str, nn.Module]:
    """Leaf modules, plus blocks (like a residual block) whose children should be seen as one."""
    chosen = {}
    for name, module in model.named_modules():
        if not name:
            continue
        is_block = type(module).__name__ in _BLOCKS
        inside_chosen_block = any(name.startswith(f"{b}.") for b, m in chosen.items()
                                  if type(m).__name__ in _BLOCKS)
        if inside_chosen_block:
            continue
        if is_block or not list(module.children()):
            chosen[name] = module
    return chosen


@torch.no_grad()
def list_layers(model: nn.Module, input_shape: tuple[int, int, int]) -> list[LayerInfo]:
    """Every leaf layer (and residual block) in forward order, with its output shape."""
    leaves = _leaves(model)
    outputs: dict[str, torch.Tensor] = {}
    device = next(model.parameters()).device
    with eval_mode(model), forward_hooks(leaves, outputs):
        model(torch.zeros(1, *input_shape, device=device))
    return [LayerInfo(name, leaves[name], type(leaves[name]).__name__, tuple(out.shape[1:]))
            for name, out in outputs.items() if isinstance(out, torch.Tensor)]


def _is_conv(layer: LayerInfo) -> bool:
    return isinstance(layer.module, nn.Conv2d) or layer.kind in _BLOCKS


def conv_layers(layers: list[LayerInfo]) -> list[LayerInfo]:
    return [layer for layer in layers if _is_conv(layer)]


_POOLS = (nn.MaxPool2d, nn.AvgPool2d)
_NORMS_AND_ACTIVATIONS = (nn.BatchNorm2d, nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU)


def activation_after(layers: list[LayerInfo], conv: LayerInfo) -> LayerInfo:
    """A conv layer's output after its batch norm and activation: the layers right after it with
    the same output shape, up to the next conv. Where a pool comes first and the normalization and
    activation follow it (the `fast` networks), the walk goes on through the pool to them."""
    index = layers.index(conv)
    shape = conv.output_shape
    while index + 1 < len(layers):
        following = layers[index + 1]
        pool_then_activation = (isinstance(following.module, _POOLS) and index + 2 < len(layers)
                                and isinstance(layers[index + 2].module, _NORMS_AND_ACTIVATIONS))
        if _is_conv(following) or (following.output_shape != shape and not pool_then_activation):
            break  # the next conv starts the next block
        index, shape = index + 1, following.output_shape
    return layers[index]


def _side_branch(activations: list[LayerInfo], index: int) -> bool:
    """A 1x1 map followed by larger ones: a squeeze-and-excitation gate (EfficientNet-B0,
    MobileNetV3), which scales the maps of its block rather than being a depth of its own."""
    spatial = activations[index].output_shape[1:]
    return spatial == (1, 1) and any(later.output_shape[1:] != (1, 1)
                                     for later in activations[index + 1:])


def conv_activations(layers: list[LayerInfo]) -> list[LayerInfo]:
    activations = [activation_after(layers, conv) for conv in conv_layers(layers)]
    return [layer for index, layer in enumerate(activations)
            if len(layer.output_shape) != 3 or not _side_branch(activations, index)]


def last_conv_activation(layers: list[LayerInfo]) -> LayerInfo:
    """Grad-CAM's default: the last conv layer's rectified output, as in Selvaraju et al."""
    activations = conv_activations(layers)
    if not activations:
        raise CnnlabError("this model has no convolutional layer to explain")
    return activations[-1]


def find_layer(layers: list[LayerInfo], name: str) -> LayerInfo:
    """A layer by its module name ('network.features.4', or 'features.4'), or by its number in
    `cnnlab summary` ('5' or '#5'); feature maps and Grad-CAM need one whose output is maps."""
    number = name.removeprefix("#")
    for layer in layers:
        if name in (layer.name, layer.name.removeprefix("network.")) or \
                (number.isdigit() and layer.position == int(number)):
            return _with_maps(layer)
    names = [layer.name for layer in layers]
    raise CnnlabError(f"no layer {name!r} in this model{suggest(name, names)}; see them with "
                      f"`cnnlab explain RUN --list-layers` (a name or the # of `cnnlab summary`)")


def _with_maps(layer: LayerInfo) -> LayerInfo:
    if len(layer.output_shape) != 3:
        shown = layer.text or layer.kind
        raise CnnlabError(f"layer {layer.name} ({shown}) outputs a vector of "
                          f"{'x'.join(map(str, layer.output_shape))}, not maps: feature maps and "
                          f"Grad-CAM need a layer before the flatten or pooling to a vector")
    return layer
