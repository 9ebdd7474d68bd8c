"""A first layer that starts by whitening the data's patches, the first lever of airbench (Jordan,
2024, "94% on CIFAR-10 in 3.29 seconds on a single GPU"): the first conv's filters start as the
eigenvectors of the covariance of the training images' k x k patches, each scaled by
1/sqrt(its eigenvalue), and their negatives. The layers above see decorrelated inputs of equal
variance from the first step. The filters then train with the rest (airbench freezes them), and
move little: Adam's steps are small beside their size.

Hand-written: the eigendecomposition of one small covariance matrix (9 x 9 for a gray 3 x 3
conv), which no library offers as a layer initialization.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.splits import Split

SAMPLE_PIXELS = 8_000_000  # pixels of training images (10,000 at 28x28) estimate the covariance
EPSILON = 5e-4  # added to the eigenvalues: the flattest directions are not blown up to noise


def first_conv(model: nn.Module) -> nn.Conv2d | None:
    """The network's first layer where it is a plain conv (no groups, no dilation), else None."""
    first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)
    if not isinstance(first, nn.Conv2d) or first.groups != 1 or first.dilation != (1, 1):
        return None
    return first


@torch.no_grad()
def patch_covariance(split: Split, mean: torch.Tensor, std: torch.Tensor,
                     kernel: tuple[int, int]) -> torch.Tensor:
    """The covariance of the normalized k x k patches of the first SAMPLE_PIXELS pixels' images of
    `split`, accumulated batch by batch (a 28x28 image has 784 patches)."""
    total, outer, count = None, None, 0
    for images, _ in split.batches(256):
        x = (images.float() / 255 - mean.view(1, -1, 1, 1).cpu()) / std.view(1, -1, 1, 1).cpu()
        patches = nn.functional.unfold(x, kernel).transpose(1, 2).flatten(0, 1).double()
        total = patches.sum(0) if total is None else total + patches.sum(0)
        outer = patches.T @ patches if outer is None else outer + patches.T @ patches
        count += len(patches)
        if count >= SAMPLE_PIXELS:  # a patch for each pixel (unfold without padding: a few fewer)
            break
    centre = total / count
    return outer / count - torch.outer(centre, centre)


def whitening_filters(covariance: torch.Tensor, channels: int, kernel: tuple[int, int],
                      count: int) -> torch.Tensor:
    """`count` filters or fewer: the covariance's eigenvectors with the largest eigenvalues,
    each scaled by 1/sqrt(eigenvalue), and their negatives: (n, C, kh, kw), n <= count."""
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    order = eigenvalues.argsort(descending=True)[:count // 2]
    filters = eigenvectors[:, order].T / torch.sqrt(eigenvalues[order].clamp_min(0) + EPSILON)[:, None]
    return torch.cat([filters, -filters]).float().reshape(-1, channels, *kernel)


@torch.no_grad()
def whiten_first_conv(model: nn.Module, split: Split) -> bool:
    """Start the first conv's filters as whitening filters of the patches of `split`'s images
    (the filters beyond twice the patch size keep their random start). False where the network's
    first layer is not a plain conv. `model`: a Classifier (its mean and std normalize pixels)."""
    conv = first_conv(model)
    if conv is None:
        return False
    covariance = patch_covariance(split, model.mean, model.std, conv.kernel_size)
    filters = whitening_filters(covariance, conv.in_channels, conv.kernel_size, conv.out_channels)
    conv.weight[:len(filters)] = filters.to(conv.weight)
    if conv.bias is not None:
        conv.bias.zero_()
    return True
