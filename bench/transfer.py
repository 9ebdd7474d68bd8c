"""Transfer learning with 100 labelled images per class: a CNN from scratch, a frozen pretrained
backbone (features cached, head trained), and a fine-tuned pretrained backbone, each given the same
wall-clock training budget on this machine. One run, one table.

    .venv/bin/python bench/transfer.py [--budget 150] [--per-class 100] [--image-size 96]

Each method first trains (past any frozen first epoch) to measure its speed, then gets as many
epochs as fit in the budget. Feature caching is reported in the wall time, not in the training
time. Accuracy is on the full 10,000-image test set.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import cnnlab

METHODS = {
    "scratch: simple CNN, 28x28": dict(model="simple", lr=3e-3),
    "frozen EfficientNet-Lite0 + cached features": dict(
        model="timm:efficientnet_lite0", pretrained=True, freeze="backbone", lr=3e-3),
    "fine-tuned EfficientNet-Lite0": dict(
        model="timm:efficientnet_lite0", pretrained=True, freeze_epochs=1, backbone_lr=0.1,
        lr=1e-3),
}


def _settings(options: dict, args: argparse.Namespace) -> dict:
    data = {"name": "fashion-mnist", "per_class": args.per_class, "val_fraction": 0.02}
    if options.get("pretrained"):
        data["image_size"] = args.image_size
    return dict(data=data, batch_size=32, quiet=True, **options)


def _train(options: dict, args: argparse.Namespace, epochs: int, folder: str):
    started = time.perf_counter()
    run = cnnlab.train(**_settings(options, args), epochs=epochs, out=folder)
    return run, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget", type=float, default=150, help="training seconds per method")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=96, help="input side for EfficientNet")
    parser.add_argument("--max-epochs", type=int, default=150)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for index, (name, options) in enumerate(METHODS.items()):
            # probe past any frozen first phase: the epochs that train every layer cost the most
            probe, _ = _train(options, args, 1 + options.get("freeze_epochs", 0),
                              f"{root}/probe{index}")
            per_epoch = max(probe.history[-1]["seconds"], 1e-3)
            epochs = max(1, min(args.max_epochs, int(args.budget // per_epoch)))
            run, wall = _train(options, args, epochs, f"{root}/run{index}")
            trained = sum(row["seconds"] for row in run.history)
            rows.append((name, epochs, trained, wall, run.test_accuracy))
            print(f"{name}: {epochs} epochs, {trained:.0f}s training, {wall:.0f}s in all, "
                  f"test accuracy {run.test_accuracy:.2%}", flush=True)
    print(f"\n{args.per_class} labelled images per class, budget {args.budget:.0f}s of training each")
    print("| method | epochs | training s | wall s (data, cache, test included) | test accuracy |")
    print("|---|---|---|---|---|")
    for name, epochs, trained, wall, accuracy in rows:
        print(f"| {name} | {epochs} | {trained:.0f} | {wall:.0f} | {accuracy:.2%} |")


if __name__ == "__main__":
    main()
