"""Turn parsed layers into a PyTorch network, checking every shape on the way.

Each layer is built by its entry in models/layers.py, which also records its cost: output shape,
parameters, FLOPs, receptive field, and for conv layers the parameters a fully connected layer with
the same input and output sizes would need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..base.errors import CnnlabError
from .layers import LAYERS, Shape, Tracker
from .spec import Layer


@dataclass
class BuiltLayer:
    layer: Layer
    module: nn.Module | None
    in_shape: Shape
    out_shape: Shape
    params: int
    flops: int
    receptive_field: int | None  # input pixels one output value sees; None once flattened
    dense_params: int | None  # conv layers: what a dense layer in_shape -> out_shape would need


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

    def get_classifier(self) -> nn.Linear:
        """The output layer (timm's name for it): the head's last dense layer, after which only a
        softmax may follow."""
        return next(m for m in reversed(self.head) if isinstance(m, nn.Linear))


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
    tracker, shape, built = Tracker(), tuple(input_shape), []
    for index, layer in enumerate(layers):
        units = num_classes if index == output_index else None
        module, out_shape, flops = LAYERS[layer.name].build(layer, shape, tracker, units)
        params = sum(p.numel() for p in module.parameters()) if module is not None else 0
        dense = ((math.prod(shape) + 1) * math.prod(out_shape) if LAYERS[layer.name].conv
                 else None)
        built.append(BuiltLayer(layer, module, shape, out_shape, params, flops, tracker.rf, dense))
        if module is not None:  # explain finds a layer by the number and text summary shows
            module.layer_position, module.layer_text = layer.position, layer.text
        shape = out_shape
    modules = [b.module for b in built if b.module is not None]
    spatial = [i for i, b in enumerate(b for b in built if b.module is not None)
               if len(b.out_shape) == 3]
    split = spatial[-1] + 1 if spatial else 0
    return Network(nn.Sequential(*modules[:split]), nn.Sequential(*modules[split:])), built
