"""Every layer of the layer language, one table entry each: the arguments it takes (for parsing),
how it is built and what it costs (for building and the summary), and whether it is a conv layer
(for the summary's parameter sharing and for explain). A new layer is one entry here.

Each builder records the layer's cost as it builds it: output shape and FLOPs (counted the way
torch.utils.flop_counter counts them: 2 per multiply-add of convolutions and dense layers, nothing
for activations, pooling or batch norm), and moves the receptive field along.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..base.errors import CnnlabError


@dataclass(frozen=True)
class Layer:
    """One parsed token: canonical name, full arguments, 1-based position and the text written."""

    name: str
    args: dict[str, Any]
    position: int
    text: str

    def describe(self) -> str:
        return f"layer {self.position} {self.text!r}"


Shape = tuple[int, ...]  # (C, H, W) for feature maps, (F,) for vectors; batch left out
# (layer, input shape, receptive field tracker, units of the output layer or None)
#   -> (module or None, output shape, FLOPs)
Builder = Callable[["Layer", Shape, "Tracker", "int | None"], tuple["nn.Module | None", Shape, int]]


class Tracker:
    """Receptive field arithmetic: r grows by (k-1)*d*jump, jump multiplies by the stride."""

    def __init__(self) -> None:
        self.rf: int | None = 1
        self.jump = 1

    def add(self, kernel: int, stride: int, dilation: int = 1) -> None:
        if self.rf is not None:
            self.rf += (kernel - 1) * dilation * self.jump
            self.jump *= stride


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


def out_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def need_map(layer: Layer, shape: Shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise CnnlabError(f"{layer.describe()}: needs a feature map (C, H, W) but gets a flat "
                          f"vector of {shape[0]}; put it before flatten/gap")
    return shape  # type: ignore[return-value]


MAX_LAYER_BYTES = 4 * 2**30  # float32 weights of one layer; a typo like dense(10000000) stops here


def check_weights(layer: Layer, params: int) -> None:
    """Refuse, before allocating, a layer whose weights would not fit a sane memory budget."""
    if params * 4 > MAX_LAYER_BYTES:
        raise CnnlabError(f"{layer.describe()}: would need {params:,} weights "
                          f"({params * 4 / 2**30:.1f} GiB); use fewer units or filters, or pool "
                          f"before it")


def _fmt(shape: Shape) -> str:
    return "x".join(str(s) for s in shape)


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


def _build_conv(layer: Layer, shape: Shape, tracker: Tracker, units: int | None):
    channels, height, width = need_map(layer, shape)
    a = layer.args
    if channels % a["groups"]:
        raise CnnlabError(f"{layer.describe()}: {channels} input channels are not divisible by "
                          f"groups={a['groups']}")
    padding = _conv_padding(layer)
    check_weights(layer, a["filters"] * (channels // a["groups"]) * a["kernel"] ** 2)
    module = nn.Conv2d(channels, a["filters"], a["kernel"], a["stride"], padding, a["dilation"],
                       a["groups"], bias=a["bias"])
    if padding == "same":
        out_h, out_w = height, width
    else:
        out_h = out_size(height, a["kernel"], a["stride"], padding, a["dilation"])
        out_w = out_size(width, a["kernel"], a["stride"], padding, a["dilation"])
    if out_h < 1 or out_w < 1:
        raise CnnlabError(f"{layer.describe()}: a {a['kernel']}x{a['kernel']} kernel does not fit "
                          f"the {height}x{width} input ({_fmt(shape)}); use p=same, a smaller "
                          f"kernel or less pooling before it")
    tracker.add(a["kernel"], a["stride"], a["dilation"])
    out = (a["filters"], out_h, out_w)
    flops = 2 * math.prod(out) * (channels // a["groups"]) * a["kernel"] ** 2
    return module, out, flops


def _build_pool(layer: Layer, shape: Shape, tracker: Tracker, units: int | None):
    channels, height, width = need_map(layer, shape)
    size, padding = layer.args["size"], layer.args["padding"]
    stride = layer.args["stride"] or size
    if padding in ("same", "valid"):
        padding = 0 if padding == "valid" else size // 2
    if padding > size // 2:
        raise CnnlabError(f"{layer.describe()}: padding {padding} is more than half the pool size")
    out_h, out_w = (out_size(height, size, stride, padding), out_size(width, size, stride, padding))
    if out_h < 1 or out_w < 1:
        raise CnnlabError(f"{layer.describe()}: cannot pool a {height}x{width} map with size "
                          f"{size} (input {_fmt(shape)}); remove a pooling layer or use a larger "
                          f"input")
    pool = nn.MaxPool2d if layer.name == "maxpool" else nn.AvgPool2d
    tracker.add(size, stride)
    return pool(size, stride, padding), (channels, out_h, out_w), 0


def _build_resblock(layer: Layer, shape: Shape, tracker: Tracker, units: int | None):
    channels, height, width = need_map(layer, shape)
    filters, stride = layer.args["filters"], layer.args["stride"]
    out_h, out_w = out_size(height, 3, stride, 1), out_size(width, 3, stride, 1)
    block = ResBlock(channels, filters, stride)
    tracker.add(3, stride)
    tracker.add(3, 1)
    out = (filters, out_h, out_w)
    flops = 2 * out_h * out_w * filters * 9 * (channels + filters)
    if not isinstance(block.shortcut, nn.Identity):
        flops += 2 * out_h * out_w * filters * channels
    return block, out, flops


def _build_dense(layer: Layer, shape: Shape, tracker: Tracker, units: int | None):
    units = units or layer.args["units"]
    if len(shape) != 1:
        raise CnnlabError(f"{layer.describe()}: dense needs a flat input but gets a "
                          f"{_fmt(shape)} feature map; put flatten or gap before it")
    check_weights(layer, shape[0] * units)
    return nn.Linear(shape[0], units, bias=layer.args["bias"]), (units,), 2 * shape[0] * units


def _same_shape(make: Callable[[dict[str, Any], Shape], nn.Module]) -> Builder:
    """Layers that keep their input's shape and cost no FLOPs: activations, dropout, batch norm."""
    return lambda layer, shape, tracker, units: (make(layer.args, shape), shape, 0)


def _build_flatten(layer: Layer, shape: Shape, tracker: Tracker, units: int | None):
    need_map(layer, shape)
    tracker.rf = None
    return nn.Flatten(), (math.prod(shape),), 0


def _build_gap(layer: Layer, shape: Shape, tracker: Tracker, units: int | None):
    need_map(layer, shape)
    tracker.rf = None
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), (shape[0],), 0


def _build_nothing(layer: Layer, shape: Shape, tracker: Tracker, units: int | None):
    return None, shape, 0  # softmax: the network outputs logits, inference applies softmax


@dataclass(frozen=True)
class LayerDef:
    """One layer: its arguments (positional order, defaults, required, short names), its help line,
    its builder, and whether it is a conv layer (a map of filters that share their weights)."""

    build: Builder
    positional: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    short: dict[str, str] = field(default_factory=dict)
    help: str = ""
    conv: bool = False
    block: type[nn.Module] | None = None  # a module of several convs that explain sees as one


_CONV_SHORT = {"f": "filters", "k": "kernel", "kernel_size": "kernel", "s": "stride",
               "p": "padding", "pad": "padding", "d": "dilation", "g": "groups"}
_POOL_SHORT = {"k": "size", "kernel": "size", "pool_size": "size", "s": "stride", "p": "padding"}


def _pool(name: str, what: str) -> LayerDef:
    return LayerDef(_build_pool, ("size", "stride"), {"stride": None, "padding": 0}, ("size",),
                    _POOL_SHORT, f"{name}(size, s=size, p=0): {what}")


def _elementwise(make: Callable[[dict[str, Any], Shape], nn.Module], help: str,
                 **defaults: Any) -> LayerDef:
    """A layer that keeps its input's shape; its arguments, if any, are positional."""
    return LayerDef(_same_shape(make), tuple(defaults), defaults, help=help)


def _batchnorm(args: dict[str, Any], shape: Shape) -> nn.Module:
    return nn.BatchNorm2d(shape[0]) if len(shape) == 3 else nn.BatchNorm1d(shape[0])


LAYERS: dict[str, LayerDef] = {
    "conv": LayerDef(_build_conv, ("filters", "kernel"),
                     {"kernel": 3, "stride": 1, "padding": "valid", "dilation": 1, "groups": 1,
                      "bias": True}, ("filters",), _CONV_SHORT,
                     "conv(filters, k=3, s=1, p=valid|same|N, d=1, g=1): 2-D convolution", conv=True),
    "batchnorm": _elementwise(_batchnorm, "batchnorm: batch normalization over channels (or "
                                          "features)"),
    "relu": _elementwise(lambda a, shape: nn.ReLU(), "relu: max(0, x)"),
    "leaky_relu": _elementwise(lambda a, shape: nn.LeakyReLU(a["slope"]), "leaky_relu(slope=0.01)",
                               slope=0.01),
    "elu": _elementwise(lambda a, shape: nn.ELU(a["alpha"]), "elu(alpha=1.0)", alpha=1.0),
    "gelu": _elementwise(lambda a, shape: nn.GELU(), "gelu"),
    "silu": _elementwise(lambda a, shape: nn.SiLU(), "silu (swish)"),
    "tanh": _elementwise(lambda a, shape: nn.Tanh(), "tanh"),
    "sigmoid": _elementwise(lambda a, shape: nn.Sigmoid(), "sigmoid"),
    "maxpool": _pool("maxpool", "max pooling"),
    "avgpool": _pool("avgpool", "average pooling"),
    "gap": LayerDef(_build_gap, help="gap: global average pooling, (C, H, W) -> (C,)"),
    "flatten": LayerDef(_build_flatten, help="flatten: (C, H, W) -> (C*H*W,)"),
    "dense": LayerDef(_build_dense, ("units",), {"units": None, "bias": True}, (),
                      {"n": "units", "neurons": "units", "out": "units"},
                      "dense(units): fully connected; the last one gets one neuron per class"),
    "dropout": LayerDef(_same_shape(lambda a, shape: nn.Dropout(a["p"])), ("p",), {"p": 0.5}, (),
                        {"rate": "p"}, "dropout(p=0.5)"),
    "resblock": LayerDef(_build_resblock, ("filters",), {"stride": 1}, ("filters",),
                         {"f": "filters", "s": "stride"},
                         "resblock(filters, s=1): two 3x3 conv+batchnorm with a skip connection",
                         conv=True, block=ResBlock),
    "softmax": LayerDef(_build_nothing, help="softmax: only as the last token; applied at inference"),
}

ALIASES = {
    "conv2d": "conv", "convolution": "conv", "bn": "batchnorm", "batch_norm": "batchnorm",
    "leakyrelu": "leaky_relu", "lrelu": "leaky_relu", "swish": "silu",
    "max_pool": "maxpool", "maxpool2d": "maxpool", "pool": "maxpool",
    "avg_pool": "avgpool", "avgpool2d": "avgpool", "averagepool": "avgpool",
    "global_avg_pool": "gap", "globalavgpool": "gap", "global_average_pooling": "gap",
    "fc": "dense", "linear": "dense", "fully_connected": "dense",
    "residual": "resblock", "res": "resblock",
}

CONV_BLOCKS = tuple(entry.block for entry in LAYERS.values() if entry.block is not None)
