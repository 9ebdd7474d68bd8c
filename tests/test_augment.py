"""Batch augmentation against torchvision's per-image transforms."""

import math

import torch
from torchvision.transforms.v2 import functional as TF

from cnnlab.config import AugmentConfig
from cnnlab.data.augment import augment_batch, crop_resize, resized_crop_boxes


def _box(top: int, left: int, height: int, width: int, side: int) -> torch.Tensor:
    """A pixel box of a side x side image in resized_crop_boxes' grid units."""
    return torch.tensor([[(2 * left + width) / side - 1, (2 * top + height) / side - 1,
                          width / side, height / side]])


def test_crop_resize_matches_torchvision_resized_crop():
    images = torch.rand(1, 3, 32, 32)
    for top, left, height, width, size in ((8, 8, 16, 16, 8), (0, 4, 32, 24, 12), (2, 0, 30, 30, 15)):
        ours = crop_resize(images, _box(top, left, height, width, 32), size)
        theirs = TF.resized_crop(images, top, left, height, width, [size, size], antialias=False)
        # identical inside; at the edges grid_sample may blend in a pixel beyond the box
        assert torch.allclose(ours[..., 1:-1, 1:-1], theirs[..., 1:-1, 1:-1], atol=1e-5)


def test_resized_crop_boxes_stay_inside_with_the_asked_area():
    boxes = resized_crop_boxes(4000, 0.35, torch.Generator().manual_seed(0))
    centre_x, centre_y, half_width, half_height = boxes.unbind(1)
    assert ((centre_x - half_width) >= -1 - 1e-6).all() and ((centre_x + half_width) <= 1 + 1e-6).all()
    assert ((centre_y - half_height) >= -1 - 1e-6).all() and ((centre_y + half_height) <= 1 + 1e-6).all()
    area = half_width * half_height
    assert area.min() >= 0.35 * 3 / 4 - 1e-6 and area.max() <= 1 + 1e-6
    unclipped = (half_width < 1) & (half_height < 1)
    aspect = half_width[unclipped] / half_height[unclipped]
    assert aspect.min() >= 3 / 4 - 1e-5 and aspect.max() <= 4 / 3 + 1e-5
    assert abs(area.mean().item() - (0.35 + 1) / 2) < 0.05  # clipping makes few boxes smaller
    assert math.isclose(centre_x.mean().item(), 0, abs_tol=0.03)


def test_augment_batch_trains_on_smaller_crops():
    images = torch.randint(0, 256, (5, 3, 64, 64), dtype=torch.uint8)
    config = AugmentConfig(resized_crop=0.5, crop_size=40)
    out = augment_batch(images, config, flip=True, generator=torch.Generator().manual_seed(1))
    assert out.shape == (5, 3, 40, 40) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
