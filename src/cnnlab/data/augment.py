"""Augmentation of whole uint8 batches at once: no Python loop over images.

torchvision's v2 transforms draw one set of random parameters per call, so applying them per image
costs a Python round trip each; on a 2-core CPU that costs more than the model. Here every image of a
batch gets its own crop, flip, rotation and erasing from tensor operations on the batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..config import AugmentConfig
from .images import to_float


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by `padding`, then cut an (H, W) window at a random offset per image."""
    batch, _, height, width = images.shape
    padded = F.pad(images, (padding,) * 4)  # (B, C, H+2p, W+2p)
    dy = torch.randint(0, 2 * padding + 1, (batch,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (batch,), generator=generator)
    rows = (dy[:, None] + torch.arange(height))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + torch.arange(width))[:, None, :]  # (B, 1, W)
    picked = padded.permute(0, 2, 3, 1)[torch.arange(batch)[:, None, None], rows, cols]  # (B,H,W,C)
    return picked.permute(0, 3, 1, 2)


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(images.shape[0], generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def random_rotation(images: torch.Tensor, degrees: float, generator: torch.Generator) -> torch.Tensor:
    """Rotate each float image by its own angle in [-degrees, degrees] (bilinear, zero fill)."""
    angles = (torch.rand(images.shape[0], generator=generator) * 2 - 1) * math.radians(degrees)
    cos, sin = angles.cos(), angles.sin()
    zeros = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zeros], 1), torch.stack([sin, cos, zeros], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def resized_crop_boxes(batch: int, min_area: float,
                       generator: torch.Generator) -> torch.Tensor:
    """Random boxes as torchvision's RandomResizedCrop draws them (area share in [min_area, 1],
    aspect ratio in [3/4, 4/3], clipped to the image): (B, 4) rows of centre x, centre y, half
    width, half height, in grid units (the image spans [-1, 1], so a half width of 1 is the
    whole width)."""
    area = torch.empty(batch).uniform_(min_area, 1.0, generator=generator)
    aspect = torch.exp(torch.empty(batch).uniform_(math.log(3 / 4), math.log(4 / 3),
                                                    generator=generator))
    half_width = (area * aspect).sqrt().clamp(max=1.0)
    half_height = (area / aspect).sqrt().clamp(max=1.0)
    centre_x = (torch.rand(batch, generator=generator) * 2 - 1) * (1 - half_width)
    centre_y = (torch.rand(batch, generator=generator) * 2 - 1) * (1 - half_height)
    return torch.stack([centre_x, centre_y, half_width, half_height], 1)


def crop_resize(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Cut each float image's box (from resized_crop_boxes) and scale it to (size, size) in one
    grid_sample for the whole batch (bilinear; no antialiasing when shrinking)."""
    centre_x, centre_y, half_width, half_height = boxes.unbind(1)
    zeros = torch.zeros_like(centre_x)
    theta = torch.stack([torch.stack([half_width, zeros, centre_x], 1),
                         torch.stack([zeros, half_height, centre_y], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta.to(images), [images.shape[0], images.shape[1], size, size],
                         align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


def random_erasing(images: torch.Tensor, probability: float,
                   generator: torch.Generator) -> torch.Tensor:
    """Zero a random rectangle (2-33% of the area, aspect 0.3-3.3) in a fraction of the images."""
    batch, _, height, width = images.shape
    area = torch.empty(batch).uniform_(0.02, 0.33, generator=generator) * height * width
    aspect = torch.exp(torch.empty(batch).uniform_(math.log(0.3), math.log(3.3),
                                                    generator=generator))
    box_h = (area * aspect).sqrt().round().clamp(1, height)
    box_w = (area / aspect).sqrt().round().clamp(1, width)
    top = (torch.rand(batch, generator=generator) * (height - box_h + 1)).floor()
    left = (torch.rand(batch, generator=generator) * (width - box_w + 1)).floor()
    chosen = torch.rand(batch, generator=generator) < probability
    ys = torch.arange(height)[None, :, None]
    xs = torch.arange(width)[None, None, :]
    inside = ((ys >= top[:, None, None]) & (ys < (top + box_h)[:, None, None])
              & (xs >= left[:, None, None]) & (xs < (left + box_w)[:, None, None]))
    mask = inside & chosen[:, None, None]  # (B, H, W)
    return images.masked_fill(mask[:, None], 0.0)


def augment_batch(images: torch.Tensor, config: AugmentConfig, flip: bool,
                  generator: torch.Generator) -> torch.Tensor:
    """uint8 (B, C, H, W) -> augmented float32 in [0, 1]. Random numbers come from `generator`."""
    if config.crop_padding > 0:
        images = random_crop(images, config.crop_padding, generator)
    if flip:
        images = random_flip(images, generator)
    images = to_float(images)
    if config.resized_crop > 0:
        boxes = resized_crop_boxes(images.shape[0], config.resized_crop, generator)
        images = crop_resize(images, boxes, config.crop_size or images.shape[-1])
    if config.rotation > 0:
        images = random_rotation(images, config.rotation, generator)
    if config.erasing > 0:
        images = random_erasing(images, config.erasing, generator)
    return images
