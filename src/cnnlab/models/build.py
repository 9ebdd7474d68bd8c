"""Turn parsed layers into a PyTorch network, checking every shape on the way.

Each layer's cost is recorded as it is built: output shape, parameters, FLOPs (counted the way
torch.utils.flop_counter counts them: 2 per multiply-add of convolutions and dense layers, nothing
for activations, pooling or batch norm), receptive field, and the parameters a fully connected layer
with the same input and output sizes would need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import CnnlabError
from .spec import Layer

Shape = tuple[int, ...]  # (C, H, W) for feature maps, (F,) for vectors; batch left out


@dataclass
class BuiltLayer:
    layer: Layer
    module: nn.Module | None
    in_shape: Shape
    out_shape: Shape
    params: int
    flops: int
    receptive_field: int | None  # input pixels one output value sees; None once flattened
    dense_params: int  # what a dense layer mapping in_shape -> out_shape would need


class ResBlock(nn.Module):
    """Two 3x3 conv + batch norm with an identity (or 1x1 projection) shortcut, as in ResNet."""

    def __init__(self, in_channels: int, filters: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, filters, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(filters)
        self.conv2 = nn.Conv2d(filters, filters, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(filters)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != filters:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, filters, 1, stride, bias=False),
                                          nn.BatchNorm2d(filters))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Network(nn.Module):
    """A CNN split timm-style: `forward_features` (the conv stack) and `forward_head` (the rest)."""

    def __init__(self, features: nn.Sequential, head: nn.Sequential) -> None:
        super().__init__()
        self.features = features
        self.head = head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, C, H, W)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)  # (B, num_classes) logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


_ACTIVATIONS = {
    "relu": lambda a: nn.ReLU(),
    "leaky_relu": lambda a: nn.LeakyReLU(a["slope"]),
    "elu": lambda a: nn.ELU(a["alpha"]),
    "gelu": lambda a: nn.GELU(),
    "silu": lambda a: nn.SiLU(),
    "tanh": lambda a: nn.Tanh(),
    "sigmoid": lambda a: nn.Sigmoid(),
}


class _Tracker:
    """Receptive field arithmetic: r grows by (k-1)*d*jump, jump multiplies by the stride."""

    def __init__(self) -> None:
        self.rf: int | None = 1
        self.jump = 1

    def add(self, kernel: int, stride: int, dilation: int = 1) -> None:
        if self.rf is not None:
            self.rf += (kernel - 1) * dilation * self.jump
            self.jump *= stride


def _out_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _conv_padding(layer: Layer) -> int | str:
    args = layer.args
    padding, kernel, stride, dilation = args["padding"], args["kernel"], args["stride"], args["dilation"]
    if padding == "valid":
        return 0
    if padding != "same":
        return padding
    span = dilation * (kernel - 1)
    if span % 2 == 0:
        return span // 2  # symmetric: output = ceil(input / stride)
    if stride == 1:
        return "same"  # PyTorch pads the odd pixel on one side
    raise CnnlabError(f"{layer.describe()}: p=same with an even kernel and stride > 1 is "
                      f"ambiguous; give the padding as a number")


def _need_map(layer: Layer, shape: Shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise CnnlabError(f"{layer.describe()}: needs a feature map (C, H, W) but gets a flat "
                          f"vector of {shape[0]}; put it before flatten/gap")
    return shape  # type: ignore[return-value]


def _fmt(shape: Shape) -> str:
    return "x".join(str(s) for s in shape)


def _build_conv(layer: Layer, shape: Shape, tracker: _Tracker) -> tuple[nn.Module, Shape, int]:
    channels, height, width = _need_map(layer, shape)
    a = layer.args
    if channels % a["groups"]:
        raise CnnlabError(f"{layer.describe()}: {channels} input channels are not divisible by "
                          f"groups={a['groups']}")
    padding = _conv_padding(layer)
    module = nn.Conv2d(channels, a["filters"], a["kernel"], a["stride"], padding, a["dilation"],
                       a["groups"], bias=a["bias"])
    if padding == "same":
        out_h, out_w = height, width
    else:
        out_h = _out_size(height, a["kernel"], a["stride"], padding, a["dilation"])
        out_w = _out_size(width, a["kernel"], a["stride"], padding, a["dilation"])
    if out_h < 1 or out_w < 1:
        raise CnnlabError(f"{layer.describe()}: a {a['kernel']}x{a['kernel']} kernel does not fit "
                          f"the {height}x{width} input ({_fmt(shape)}); use p=same, a smaller "
                          f"kernel or less pooling before it")
    tracker.add(a["kernel"], a["stride"], a["dilation"])
    out = (a["filters"], out_h, out_w)
    flops = 2 * math.prod(out) * (channels // a["groups"]) * a["kernel"] ** 2
    return module, out, flops


def _build_pool(layer: Layer, shape: Shape, tracker: _Tracker) -> tuple[nn.Module, Shape, int]:
    channels, height, width = _need_map(layer, shape)
    size, padding = layer.args["size"], layer.args["padding"]
    stride = layer.args["stride"] or size
    if padding in ("same", "valid"):
        padding = 0 if padding == "valid" else size // 2
    if padding > size // 2:
        raise CnnlabError(f"{layer.describe()}: padding {padding} is more than half the pool size")
    out_h, out_w = (_out_size(height, size, stride, padding), _out_size(width, size, stride, padding))
    if out_h < 1 or out_w < 1:
        raise CnnlabError(f"{layer.describe()}: cannot pool a {height}x{width} map with size "
                          f"{size} (input {_fmt(shape)}); remove a pooling layer or use a larger "
                          f"input")
    pool = nn.MaxPool2d if layer.name == "maxpool" else nn.AvgPool2d
    tracker.add(size, stride)
    return pool(size, stride, padding), (channels, out_h, out_w), 0


def _build_resblock(layer: Layer, shape: Shape, tracker: _Tracker) -> tuple[nn.Module, Shape, int]:
    channels, height, width = _need_map(layer, shape)
    filters, stride = layer.args["filters"], layer.args["stride"]
    out_h, out_w = _out_size(height, 3, stride, 1), _out_size(width, 3, stride, 1)
    block = ResBlock(channels, filters, stride)
    tracker.add(3, stride)
    tracker.add(3, 1)
    out = (filters, out_h, out_w)
    flops = 2 * out_h * out_w * filters * 9 * (channels + filters)
    if not isinstance(block.shortcut, nn.Identity):
        flops += 2 * out_h * out_w * filters * channels
    return block, out, flops


def _build_dense(layer: Layer, shape: Shape, units: int) -> tuple[nn.Module, Shape, int]:
    if len(shape) != 1:
        raise CnnlabError(f"{layer.describe()}: dense needs a flat input but gets a "
                          f"{_fmt(shape)} feature map; put flatten or gap before it")
    return nn.Linear(shape[0], units, bias=layer.args["bias"]), (units,), 2 * shape[0] * units


def _build_one(layer: Layer, shape: Shape, tracker: _Tracker,
               output_units: int | None) -> tuple[nn.Module | None, Shape, int]:
    name = layer.name
    if name == "conv":
        return _build_conv(layer, shape, tracker)
    if name in ("maxpool", "avgpool"):
        return _build_pool(layer, shape, tracker)
    if name == "resblock":
        return _build_resblock(layer, shape, tracker)
    if name == "dense":
        return _build_dense(layer, shape, output_units or layer.args["units"])
    if name in _ACTIVATIONS:
        return _ACTIVATIONS[name](layer.args), shape, 0
    if name == "dropout":
        return nn.Dropout(layer.args["p"]), shape, 0
    if name == "batchnorm":
        return (nn.BatchNorm2d(shape[0]) if len(shape) == 3 else nn.BatchNorm1d(shape[0])), shape, 0
    if name in ("flatten", "gap"):
        _need_map(layer, shape)
        tracker.rf = None
        if name == "flatten":
            return nn.Flatten(), (math.prod(shape),), 0
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), (shape[0],), 0
    if name == "softmax":
        return None, shape, 0
    raise CnnlabError(f"{layer.describe()}: no builder for {name}")


def _output_layer_index(layers: list[Layer], num_classes: int) -> int:
    """Index of the output dense layer; checks that the network ends in one."""
    last = len(layers) - 1
    if layers[last].name == "softmax":
        last -= 1
    for layer in layers[:-1]:
        if layer.name == "softmax":
            raise CnnlabError(f"{layer.describe()}: softmax may only be the last layer")
    if last < 0 or layers[last].name != "dense":
        raise CnnlabError("the network must end with dense, the output layer with one neuron per "
                          "class (e.g. ... flatten dense)")
    for layer in layers[:last]:
        if layer.name == "dense" and layer.args["units"] is None:
            raise CnnlabError(f"{layer.describe()}: only the output layer may leave out its size; "
                              f"write dense(128)")
    units = layers[last].args["units"]
    if units is not None and units != num_classes:
        raise CnnlabError(f"{layers[last].describe()}: the output layer has {units} neurons but "
                          f"the data has {num_classes} classes; write dense without a size")
    return last


def build_network(layers: list[Layer], input_shape: Shape,
                  num_classes: int) -> tuple[Network, list[BuiltLayer]]:
    """Build the network for inputs of `input_shape` (C, H, W) and report every layer."""
    output_index = _output_layer_index(layers, num_classes)
    tracker, shape, built = _Tracker(), tuple(input_shape), []
    for index, layer in enumerate(layers):
        units = num_classes if index == output_index else None
        module, out_shape, flops = _build_one(layer, shape, tracker, units)
        params = sum(p.numel() for p in module.parameters()) if module is not None else 0
        dense = (math.prod(shape) + 1) * math.prod(out_shape) if layer.name in (
            "conv", "resblock", "dense") else 0
        built.append(BuiltLayer(layer, module, shape, out_shape, params, flops, tracker.rf, dense))
        shape = out_shape
    modules = [b.module for b in built if b.module is not None]
    spatial = [i for i, b in enumerate(b for b in built if b.module is not None)
               if len(b.out_shape) == 3]
    split = spatial[-1] + 1 if spatial else 0
    return Network(nn.Sequential(*modules[:split]), nn.Sequential(*modules[split:])), built
