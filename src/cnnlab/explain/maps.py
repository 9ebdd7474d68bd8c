"""What the layers compute: feature maps of conv layers for an image, and first-layer filters."""

from __future__ import annotations

import torch
from torch import nn

from ..base.errors import CnnlabError
from ..models.modes import eval_mode
from .layers import LayerInfo, conv_activations, find_layer, forward_hooks, list_layers


def feature_maps(model: nn.Module, image: torch.Tensor,
                 layer: str | None = None) -> dict[str, torch.Tensor]:
    """Activations (C, H, W) of every conv layer, after its batch norm and activation (or of just
    `layer`), for one float image (C, H, W)."""
    layers = list_layers(model, tuple(image.shape))
    chosen: list[LayerInfo] = [find_layer(layers, layer)] if layer else conv_activations(layers)
    outputs: dict[str, torch.Tensor] = {}
    with eval_mode(model), torch.no_grad(), \
            forward_hooks({info.name: info.module for info in chosen}, outputs):
        model(image.unsqueeze(0))
    return {name: output[0].cpu() for name, output in outputs.items() if output.ndim == 4}


def first_conv_filters(model: nn.Module) -> torch.Tensor:
    """The first conv layer's kernels, (filters, in_channels, k, k)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.weight.detach().cpu()
    raise CnnlabError("the model has no conv layer, so it has no filters to show; saliency and "
                      "integrated-gradients explain any model")
