"""Attribution maps through Captum: saliency, integrated gradients, Grad-CAM, occlusion.

Each returns a heatmap per image with the input's height and width, (B, H, W), non-negative.
Captum registers and removes its own hooks; the model's train/eval mode is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion, Saliency
from torch import nn

from ..base.errors import unknown
from ..models.modes import eval_mode
from .layers import find_layer, last_conv_activation, list_layers


def saliency(model: nn.Module, x: torch.Tensor, target: torch.Tensor, layer: str | None) -> torch.Tensor:
    # |d logit / d pixel|, the largest over colour channels (Simonyan et al., 2014)
    return Saliency(model).attribute(x, target=target, abs=True).amax(1)


def integrated_gradients(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                         layer: str | None) -> torch.Tensor:
    # baseline: a black image, 32 steps of the path integral
    attribution = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x),
                                                       target=target, n_steps=32,
                                                       internal_batch_size=256)
    return attribution.abs().sum(1)


def gradcam(model: nn.Module, x: torch.Tensor, target: torch.Tensor, layer: str | None) -> torch.Tensor:
    layers = list_layers(model, tuple(x.shape[1:]))
    chosen = find_layer(layers, layer) if layer else last_conv_activation(layers)
    cam = LayerGradCam(model, chosen.module).attribute(x, target=target, relu_attributions=True)
    upsampled = LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear")
    return upsampled[:, 0]  # (B, H, W)


def occlusion(model: nn.Module, x: torch.Tensor, target: torch.Tensor, layer: str | None) -> torch.Tensor:
    # a black patch about 1/7 of the image wide, slid in half-patch strides
    channels, height, width = x.shape[1:]
    patch = max(2, min(height, width) // 7)
    stride = max(1, patch // 2)
    attribution = Occlusion(model).attribute(x, target=target, baselines=0.0,
                                             sliding_window_shapes=(channels, patch, patch),
                                             strides=(channels, stride, stride))
    return attribution.sum(1).clamp_min(0)  # where hiding the pixels lowers the class score


ATTRIBUTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "saliency": saliency,
    "integrated-gradients": integrated_gradients,
    "gradcam": gradcam,
    "occlusion": occlusion,
}


def attribute(method: str, model: nn.Module, images: torch.Tensor, target: torch.Tensor,
              layer: str | None = None, batch_size: int = 64) -> torch.Tensor:
    """Heatmaps (B, H, W) for float images (B, C, H, W) in [0, 1], explaining class `target`."""
    if method not in ATTRIBUTIONS:
        raise unknown("attribution method", method, ATTRIBUTIONS)
    maps = []
    with eval_mode(model):
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].clone().requires_grad_(True)
            maps.append(ATTRIBUTIONS[method](model, x, target[start:start + batch_size],
                                             layer).detach().float().cpu())
    return torch.cat(maps)
