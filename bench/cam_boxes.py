"""Where the object is: Grad-CAM boxes (explain/boxes.cam_box) against the known boxes of
generated shapes, for several thresholds, beside the pointing game.

    .venv/bin/python bench/cam_boxes.py [--images 300] [--shares 0.2,0.3,...] [--side 10] [--seed 0]

The network and data are the test suite's (tests/test_hierarchy_boxes.py): three shapes (square,
cross, disc, 10x10) at random places on 32x32 noise, 200 per class, 8 epochs of a three-conv
network. The images measured are new ones, drawn with another seed. --side draws larger shapes
(for training and measuring): the best threshold depends on how much of the image the object
fills. Flowers12 has no object boxes, so only the shapes are measured.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shapes the tests draw
from tests.helpers import SHAPES, draw_shape  # noqa: E402

MODEL = ("conv(16, k=3, p=same) bn relu maxpool(2) conv(32, k=3, p=same) bn relu "
         "maxpool(2) conv(64, k=3, p=same) bn relu gap dense")


def _shape_folder(root: Path, per_class: int, side: int) -> None:
    """tests.helpers.make_shape_folder's folder, with shapes of any side."""
    rng = np.random.default_rng(0)
    for kind in SHAPES:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(draw_shape(kind, rng, side=side)[0]).save(root / kind / f"{i:04d}.png")


def _train(folder: Path, seed: int, side: int):
    import cnnlab

    _shape_folder(folder / "data", 200, side)
    return cnnlab.train(data={"name": str(folder / "data"), "val_fraction": 0.15}, model=MODEL,
                        epochs=8, batch_size=32, lr=3e-3, seed=seed, out=str(folder / "run"),
                        quiet=True)


def _measure(run_path: Path, count: int, shares: list[float], side: int) -> dict[str, float]:
    import cnnlab
    from cnnlab.explain import attribute
    from cnnlab.explain.boxes import box_iou, cam_box

    predictor = cnnlab.load(run_path)
    rng = np.random.default_rng(123)
    drawn = [draw_shape(SHAPES[i % 3], rng, side=side) for i in range(count)]
    images = torch.stack([torch.from_numpy(image)[None].float() / 255 for image, _ in drawn])
    boxes = [box for _, box in drawn]
    labels = torch.tensor([predictor.class_names.index(SHAPES[i % 3]) for i in range(count)])
    heatmaps = attribute("gradcam", predictor.model, images, labels)
    peaks = [divmod(int(heatmap.argmax()), heatmap.shape[1]) for heatmap in heatmaps]
    found = {"pointing game": np.mean([t <= y < t + h and le <= x < le + w
                                       for (t, le, h, w), (y, x) in zip(boxes, peaks, strict=True)])}
    for share in shares:
        ious = [box_iou(cam_box(heatmap, share), truth)
                for heatmap, truth in zip(heatmaps, boxes, strict=True)]
        found[f"IoU>=0.5 at {share:g}"] = np.mean([iou >= 0.5 for iou in ious])
        found[f"mean IoU at {share:g}"] = float(np.mean(ious))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--shares", default="0.2,0.3,0.4,0.5,0.6,0.7,0.8")
    parser.add_argument("--side", type=int, default=10, help="the shapes' side in pixels (of 32)")
    parser.add_argument("--seed", type=int, default=0, help="the training run's seed")
    arguments = parser.parse_args()
    shares = [float(share) for share in arguments.shares.split(",")]
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as folder:
        run = _train(Path(folder), arguments.seed, arguments.side)
        found = _measure(run.path, arguments.images, shares, arguments.side)
    print(f"shapes of {arguments.side}x{arguments.side} in 32x32, {arguments.images} new images, "
          f"validation accuracy "
          f"{run.best_val_accuracy:.1%}; pointing game {found['pointing game']:.1%}")
    print("| share of the max | IoU >= 0.5 | mean IoU |")
    print("|---|---|---|")
    for share in shares:
        print(f"| {share:g} | {found[f'IoU>=0.5 at {share:g}']:.1%} | "
              f"{found[f'mean IoU at {share:g}']:.3f} |")


if __name__ == "__main__":
    main()
