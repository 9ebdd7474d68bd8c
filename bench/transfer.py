"""Transfer learning on small labelled sets: a CNN from scratch, a linear probe on a frozen
ImageNet-pretrained backbone, and that backbone fine-tuned, each with cnnlab's own recipe for it.

    .venv/bin/python bench/transfer.py [--datasets flowers12,fashion-mnist-100] [--methods ...]

--per-class, --epochs and --image-size shrink every method for a quick look; the table in
BENCHMARKS.md is without them.

- flowers12: real photos of 12 flower species, 720 training JPEGs (10% held out for validation)
  and 240 test JPEGs, 224x224 RGB (../shared/data/flowers12).
- fashion-mnist-100: Fashion-MNIST's first 100 training images of each class (1,000, 10% held out)
  and all 10,000 test images; EfficientNet sees them at 96x96.

Each method runs in a fresh process of its own, one after the other. "training s" is the sum of
the epochs (for the probe: its fit); "command s" is the whole of cnnlab.train: loading and
decoding the data, caching features, fitting the probe, training, and testing.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from isolated import in_own_process

FLOWERS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "flowers12"
PRETRAINED = dict(model="timm:efficientnet_lite0", pretrained=True)

DATASETS = {
    "flowers12": dict(data={"name": str(FLOWERS)}),
    "fashion-mnist-100": dict(data={"name": "fashion-mnist", "per_class": 100}),
}
# What differs from cnnlab's defaults, by method and dataset.
METHODS = {
    "scratch CNN": {
        "flowers12": dict(model="resnet-small", data={"image_size": 64}, epochs=40,
                          augment={"resized_crop": 0.35}),
        "fashion-mnist-100": dict(model="fast"),
    },
    "frozen EfficientNet-Lite0: linear probe": {
        "flowers12": dict(**PRETRAINED, freeze="backbone"),
        "fashion-mnist-100": dict(**PRETRAINED, freeze="backbone", data={"image_size": 96}),
    },
    "fine-tuned EfficientNet-Lite0": {
        "flowers12": dict(**PRETRAINED),
        "fashion-mnist-100": dict(**PRETRAINED, data={"image_size": 96}),
    },
}


def _settings(dataset: str, method: str, args: argparse.Namespace) -> dict:
    settings = {key: dict(value) if isinstance(value, dict) else value
                for key, value in DATASETS[dataset].items()}
    for key, value in METHODS[method][dataset].items():
        if isinstance(value, dict):
            settings.setdefault(key, {}).update(value)
        else:
            settings[key] = value
    if args.per_class:  # a quick look (and the test that keeps this script working)
        settings["data"]["per_class"] = args.per_class
    if args.epochs:
        settings["epochs"] = args.epochs
    if args.image_size:
        settings["data"]["image_size"] = args.image_size
    return settings


def train_one(settings: dict, out: str) -> dict:
    import cnnlab

    run = cnnlab.train(**settings, out=out, quiet=True)
    return {"epochs": len(run.history), "trained": sum(row.seconds for row in run.history),
            "command": run.seconds, "val": run.best_val_accuracy, "test": run.test_accuracy,
            "config": run.config}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated among: {', '.join(METHODS)}")
    parser.add_argument("--per-class", type=int, default=None,
                        help="quick look: only the first N training images of each class")
    parser.add_argument("--epochs", type=int, default=None, help="quick look: epochs of each")
    parser.add_argument("--image-size", type=int, default=None, help="quick look: input side")
    args = parser.parse_args()
    if not FLOWERS.is_dir():
        raise SystemExit(f"flowers12 is not at {FLOWERS}")
    tables = {}
    with tempfile.TemporaryDirectory() as root:
        for dataset in args.datasets.split(","):
            rows = []
            for index, method in enumerate(args.methods.split(",")):
                result = in_own_process(train_one, _settings(dataset, method, args),
                                        f"{root}/{dataset}-{index}")
                config = result["config"]
                size = f"{config.data.image_size}px" if config.data.image_size else "as stored"
                rows.append(f"| {method} | {config.model}, {size} | "
                            f"{result['epochs']} | {result['trained']:.0f} | "
                            f"{result['command']:.0f} | {result['test']:.2%} |")
                print(f"{dataset}: {method}: {rows[-1]}", flush=True)
            tables[dataset] = rows
    for dataset, rows in tables.items():
        print(f"\n{dataset}\n")
        print("| method | network, input | epochs | training s | command s | test accuracy |")
        print("|---|---|---|---|---|---|")
        print("\n".join(rows))


if __name__ == "__main__":
    main()
