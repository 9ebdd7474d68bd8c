"""Where the object is: box overlap against a hand count, the CAM box against scikit-image's
regions, and Grad-CAM boxes on generated shapes whose boxes are known."""

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.measure import label, regionprops

import cnnlab
from cnnlab.explain import attribute
from cnnlab.explain.boxes import CAM_BOX_SHARE, box_iou, cam_box
from cnnlab.explain.figures import heatmap_overlay

from .helpers import SHAPES, draw_shape


@pytest.mark.parametrize(("a", "b", "expected"), [
    ((0, 0, 4, 4), (2, 2, 4, 4), 4 / 28),  # a 2x2 corner shared: 4 of 16 + 16 - 4
    ((0, 0, 4, 4), (0, 0, 4, 4), 1.0),
    ((0, 0, 4, 4), (4, 0, 4, 4), 0.0),  # touching edges share no pixel
    ((1, 1, 2, 3), (0, 0, 10, 10), 6 / 100),  # inside
    ((0, 0, 3, 5), (1, 2, 6, 2), 4 / 23),  # 2 rows x 2 columns: 4 of 15 + 12 - 4
])
def test_box_iou_against_a_hand_count(a, b, expected):
    assert box_iou(a, b) == pytest.approx(expected)
    assert box_iou(b, a) == pytest.approx(expected)


def test_cam_box_takes_the_largest_region_above_the_share():
    heatmap = np.zeros((20, 30))
    heatmap[3:8, 10:16] = 1.0  # 30 pixels: the object
    heatmap[15:18, 2:4] = 0.9  # 6 pixels, as hot: a smaller second region
    heatmap[0:20, 25] = 0.3  # a long line below half the peak
    assert cam_box(heatmap, share=0.5) == (3, 10, 5, 6)
    assert cam_box(heatmap, share=0.2) == (3, 10, 5, 6)  # the line counts now: 20 < 30 pixels
    heatmap[0:20, 26] = 0.3
    assert cam_box(heatmap, share=0.2) == (0, 25, 20, 2)  # two lines, 40 pixels, win
    assert cam_box(heatmap, share=0.5) == (3, 10, 5, 6)  # below the share they do not count
    assert cam_box(np.zeros((5, 7))) == (0, 0, 5, 7)  # a map pointing nowhere


@pytest.mark.parametrize("share", [0.2, 0.35, 0.5])
def test_cam_box_agrees_with_scikit_image_regions(share):
    rng = np.random.default_rng(5)
    for _ in range(20):
        heatmap = gaussian_filter(rng.random((32, 40)), 2.5)
        heatmap -= heatmap.min()
        regions = regionprops(label(heatmap >= share * heatmap.max(), connectivity=2))
        top, left, bottom, right = max(regions, key=lambda region: region.area).bbox
        assert cam_box(torch.from_numpy(heatmap), share) == (top, left, bottom - top, right - left)


def _shapes(count: int, seed: int, class_names: list[str]):
    rng = np.random.default_rng(seed)  # images the model never saw
    images, boxes, labels = [], [], []
    for i in range(count):
        kind = SHAPES[i % 3]
        image, box = draw_shape(kind, rng)
        images.append(torch.from_numpy(image)[None].float() / 255)
        boxes.append(box)
        labels.append(class_names.index(kind))
    return torch.stack(images), boxes, torch.tensor(labels)


def test_gradcam_boxes_find_the_shapes(shapes_run, tmp_path):
    """Measured on 300 such images (bench/cam_boxes.py): the pointing game 100%; IoU >= 0.5 for
    99% of the boxes at 0.7 of the maximum, the best share for these small (10x10) shapes; mean
    IoU 0.45 at the default share, made for large objects."""
    assert shapes_run.best_val_accuracy > 0.9
    predictor = cnnlab.load(shapes_run.path)
    images, boxes, labels = _shapes(150, 123, predictor.class_names)
    heatmaps = attribute("gradcam", predictor.model, images, labels)
    peaks = [divmod(int(heatmap.argmax()), heatmap.shape[1]) for heatmap in heatmaps]
    pointed = np.mean([top <= y < top + height and left <= x < left + width
                       for (top, left, height, width), (y, x) in zip(boxes, peaks, strict=True)])

    def ious(share):
        return np.array([box_iou(cam_box(heatmap, share), truth)
                         for heatmap, truth in zip(heatmaps, boxes, strict=True)])

    located, default = np.mean(ious(0.7) >= 0.5), ious(CAM_BOX_SHARE)
    assert pointed >= 0.9, f"Grad-CAM's peak inside the shape for {pointed:.0%}"
    assert located >= 0.85, f"IoU >= 0.5 for {located:.0%} at 0.7 of the maximum"
    assert default.mean() >= 0.35, f"mean IoU {default.mean():.2f} at {CAM_BOX_SHARE}"
    heatmap_overlay(images[0], heatmaps[0], "gradcam", tmp_path / "boxed.png",
                    box=cam_box(heatmaps[0]))
    assert (tmp_path / "boxed.png").stat().st_size > 1000
