"""Where the object is, from a class-activation map: the box around its hottest region, as the CAM
papers locate objects (Zhou et al. 2016, Selvaraju et al. 2017), and the overlap of two boxes."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

Box = tuple[int, int, int, int]  # (top, left, height, width) in pixels

# Zhou et al. threshold at 20% of the map's maximum; the best share depends on how much of the
# image the object fills (Choe et al. 2020 tune it per dataset). On generated shapes
# (bench/cam_boxes.py, boxes with IoU >= 0.5 at shares 0.2 / 0.3 / 0.4 / 0.5 / 0.6 / 0.7): objects
# of 20x20 pixels in 32x32, 42 / 50 / 58 / 63 / 33 / 11%; of 10x10, 0 / 0 / 3 / 26 / 84 / 99%,
# where Grad-CAM's coarse map (8x8 there) spreads past a small object and a low share boxes the
# spread. Photos mostly show large objects: 0.5, the best for large ones.
CAM_BOX_SHARE = 0.5


def cam_box(heatmap, share: float = CAM_BOX_SHARE) -> Box:
    """The bounding box of the largest connected region (8-neighbour) of the heatmap (H, W) at or
    above `share` of its maximum. A map with nothing above zero points nowhere: the whole image."""
    values = np.asarray(heatmap, dtype=np.float64)
    height, width = values.shape
    peak = float(values.max()) if values.size else 0.0
    if not peak > 0:
        return 0, 0, height, width
    regions, count = ndimage.label(values >= share * peak, structure=np.ones((3, 3)))
    sizes = np.bincount(regions.ravel(), minlength=count + 1)[1:]
    rows, columns = ndimage.find_objects(regions)[int(sizes.argmax())]
    return rows.start, columns.start, rows.stop - rows.start, columns.stop - columns.start


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (top, left, height, width) boxes."""
    # Six lines here, where torchvision.ops.box_iou would need both boxes converted to corner
    # tensors and back for one pair.
    top, left = max(a[0], b[0]), max(a[1], b[1])
    bottom, right = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, bottom - top) * max(0, right - left)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0
