"""What the layers compute: feature maps of conv layers for an image, and first-layer filters."""

from __future__ import annotations

import torch
from torch import nn

from ..base.errors import CnnlabError
from ..models.modes import eval_mode
from .layers import LayerInfo, conv_activations, find_layer, forward_hooks, list_layers

# A timm network has some 50 conv layers: a figure for each buries the few that tell the story.
MOST_DEFAULT_MAPS = 6


def spread(layers: list[LayerInfo], most: int) -> list[LayerInfo]:
    """At most `most` of the layers, evenly spaced from the first to the last."""
    if len(layers) <= most:
        return layers
    picks = sorted({round(i * (len(layers) - 1) / (most - 1)) for i in range(most)})
    return [layers[i] for i in picks]


def _stage_ends(layers: list[LayerInfo]) -> list[LayerInfo]:
    """The last layer at each resolution: where a stage hands its maps to the next, smaller one."""
    return [layer for layer, following in zip(layers, [*layers[1:], None], strict=True)
            if following is None or following.output_shape[1:] != layer.output_shape[1:]]


def default_map_layers(layers: list[LayerInfo]) -> list[LayerInfo]:
    """Every conv layer's activation for a small network; for a deep one, the first (edges and
    colours) and the end of each resolution stage, at most MOST_DEFAULT_MAPS spread over the
    depth."""
    activations = conv_activations(layers)
    if len(activations) <= MOST_DEFAULT_MAPS:
        return activations
    ends = _stage_ends(activations)
    return spread([activations[0], *ends] if ends[0] is not activations[0] else ends,
                   MOST_DEFAULT_MAPS)


def map_layers(model: nn.Module, input_shape: tuple[int, int, int],
               layer: str | None = None) -> tuple[list[LayerInfo], int]:
    """The layers whose maps to show (`layer`, else the default choice), and how many conv
    layers the model has to choose from."""
    layers = list_layers(model, input_shape)
    chosen = [find_layer(layers, layer)] if layer else default_map_layers(layers)
    return chosen, len(conv_activations(layers))


def feature_maps(model: nn.Module, image: torch.Tensor,
                 layers: list[LayerInfo] | str | None = None) -> dict[str, torch.Tensor]:
    """Activations (C, H, W) of `layers` (default: those default_map_layers picks; a name: that
    one), after their batch norm and activation, for one float image (C, H, W)."""
    chosen = layers if isinstance(layers, list) else \
        map_layers(model, tuple(image.shape), layers)[0]
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
