"""How well `cnnlab check` finds what is wrong with a dataset (BENCHMARKS.md, "Checking the data").

    python bench/check_quality.py shipped     # flowers12 as it ships: copies, leaks, time
    python bench/check_quality.py flips       # flowers12, 10% of train labels moved: precision, recall
    python bench/check_quality.py leaks       # 30 test photos leaked into train, modified
    python bench/check_quality.py train       # test accuracy: clean, without copies, noisy, --exclude (probe)
    python bench/check_quality.py fashion     # a 10,000-image Fashion-MNIST subset, 5% flipped

Each prints one JSON line of numbers. Flips and leaks are seeded (seed 0).
"""

from __future__ import annotations

import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

import cnnlab

FLOWERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers12"


def _copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=False)
    return target


def flip_labels(root: Path, fraction: float, seed: int = 0) -> dict[str, str]:
    """Move a fraction of train/ into other class folders; new relative path -> true class."""
    rng = np.random.default_rng(seed)
    photos = sorted((root / "train").glob("*/*"))
    classes = sorted(p.name for p in (root / "train").iterdir())
    moved = {}
    for index in rng.choice(len(photos), round(fraction * len(photos)), replace=False):
        photo = photos[index]
        wrong = rng.choice([c for c in classes if c != photo.parent.name])
        photo.rename(root / "train" / wrong / photo.name)
        moved[f"train/{wrong}/{photo.name}"] = photo.parent.name
    return moved


def leak(root: Path, count: int, seed: int = 0) -> dict[str, str]:
    """Copies of `count` test photos in train (mirrored, scaled 0.9, JPEG q75); copy -> original."""
    rng = np.random.default_rng(seed)
    photos = sorted((root / "test").glob("*/*"))
    leaked = {}
    for index in rng.choice(len(photos), count, replace=False):
        photo = photos[index]
        image = ImageOps.mirror(Image.open(photo).convert("RGB"))
        image = image.resize((round(image.width * 0.9), round(image.height * 0.9)),
                             Image.Resampling.BICUBIC)
        name = f"leak_{photo.name}"
        image.save(root / "train" / photo.parent.name / name, quality=75)
        leaked[f"train/{photo.parent.name}/{name}"] = f"test/{photo.parent.name}/{photo.name}"
    return leaked


def _check(data: str, out: Path, **options):
    started = time.perf_counter()
    result = cnnlab.check(data, out=str(out), threads=2, **options)
    return result, round(time.perf_counter() - started, 1)


def shipped(work: Path) -> dict:
    result, seconds = _check(str(FLOWERS), work / "check")
    return {"pairs": result.summary["duplicate_pairs"], "counts": result.summary["counts"],
            "seconds": seconds, "peak_rss_mb": _peak_mb()}


def _precision_recall(flagged: set[str], truth: set[str]) -> dict:
    hits = len(flagged & truth)
    return {"flagged": len(flagged), "true": len(truth), "hits": hits,
            "precision": round(hits / max(1, len(flagged)), 3),
            "recall": round(hits / max(1, len(truth)), 3)}


def flips(work: Path) -> dict:
    root = _copy_tree(FLOWERS, work / "flowers")
    moved = flip_labels(root, 0.10)
    result, seconds = _check(str(root), work / "check")
    flagged = {f.file for f in result.findings if f.kind == "label-issue"}
    return {**_precision_recall(flagged, set(moved)), "seconds": seconds}


def leaks(work: Path) -> dict:
    root = _copy_tree(FLOWERS, work / "flowers")
    copies = leak(root, 30)
    result, seconds = _check(str(root), work / "check")
    found = {(f.file, f.other_file) for f in result.findings if f.kind == "leak"}
    shipped_pairs = {(f.file, f.other_file) for f in found_on_clean(work)}
    extra = found - set(copies.items()) - shipped_pairs
    return {"leaked": len(copies), "found": len(set(copies.items()) & found),
            "recall": round(len(set(copies.items()) & found) / len(copies), 3),
            "other_leak_pairs": len(found - set(copies.items())),
            "not_on_the_clean_set": len(extra), "seconds": seconds}


def found_on_clean(work: Path) -> list:
    result, _ = _check(str(FLOWERS), work / "clean")
    return [f for f in result.findings if f.kind == "leak"]


def train(work: Path) -> dict:
    """Test accuracy of the frozen-backbone probe: clean labels as shipped, and without the copies
    the check marks (the shipped set's leaks lift its test accuracy); 10% moved; moved with
    --exclude of the label issues alone and of every row the check marks."""
    accuracy = {"clean": _probe(str(FLOWERS), work / "clean")}
    _check(str(FLOWERS), work / "clean-check")
    accuracy["clean_without_copies"] = _probe(str(FLOWERS), work / "clean-excluded",
                                              exclude=str(work / "clean-check" / "check.csv"))
    root = _copy_tree(FLOWERS, work / "flowers")
    flip_labels(root, 0.10)
    accuracy["noisy"] = _probe(str(root), work / "noisy")
    result, _ = _check(str(root), work / "check")
    issues = work / "label-issues.txt"
    issues.write_text("".join(f"{f.file}\n" for f in result.findings if f.kind == "label-issue"))
    accuracy["noisy_without_label_issues"] = _probe(str(root), work / "noisy-issues",
                                                    exclude=str(issues))
    accuracy["noisy_excluded"] = _probe(str(root), work / "excluded",
                                        exclude=str(work / "check" / "check.csv"))
    accuracy["excluded_images"] = result.summary["marked_exclude"]
    return accuracy


def _probe(data: str, out: Path, **options) -> float:
    run = cnnlab.train(data=data, model="timm:efficientnet_lite0", pretrained=True,
                       freeze="backbone", out=str(out), threads=2, quiet=True, **options)
    return round(run.test_accuracy, 4)


def fashion(work: Path) -> dict:
    """10,000 seeded Fashion-MNIST training images and the whole test set as folders of PNGs,
    5% of the training labels moved; test accuracy of the default CNN: clean, noisy, excluded.
    Fashion-MNIST has label errors and look-alike classes of its own (shirt, T-shirt, pullover,
    coat), so the check of the clean labels is run too: a flagged image that was not moved but
    was flagged on the clean labels already is one of the set's own issues, counted apart."""
    from cnnlab.config import DataConfig
    from cnnlab.data import load_dataset

    data = load_dataset(DataConfig(name="fashion-mnist", val_fraction=0))
    names = [n.replace("/", "-") for n in data.class_names]
    chosen = np.random.default_rng(0).choice(len(data.train), 10_000, replace=False)
    _write_pngs(data.train, chosen, work / "fashion" / "train", names)
    _write_pngs(data.test, range(len(data.test)), work / "fashion" / "test", names)
    folder = str(work / "fashion")
    accuracy = {"clean": _small_cnn(folder, work / "clean")}
    own, _ = _check(folder, work / "clean-check")
    own_issues = {Path(f.file).name for f in own.findings if f.kind == "label-issue"}
    moved = flip_labels(work / "fashion", 0.05)
    accuracy["noisy"] = _small_cnn(folder, work / "noisy")
    result, seconds = _check(folder, work / "check")
    accuracy["noisy_excluded"] = _small_cnn(folder, work / "excluded",
                                            exclude=str(work / "check" / "check.csv"))
    flagged = {f.file for f in result.findings if f.kind == "label-issue"}
    not_moved = flagged - set(moved)
    return {**_precision_recall(flagged, set(moved)), "seconds": seconds,
            "flagged_on_clean_labels": len(own_issues),
            "flagged_not_moved": len(not_moved),
            "flagged_not_moved_but_flagged_on_clean": len({f for f in not_moved
                                                           if Path(f).name in own_issues}),
            "copy_pairs": result.summary["duplicate_pairs"],
            "excluded_images": result.summary["marked_exclude"], "test_accuracy": accuracy,
            "peak_rss_mb": _peak_mb()}


def _write_pngs(split, indices, root: Path, names: list[str]) -> None:
    for name in names:
        (root / name).mkdir(parents=True)
    for i in indices:
        image = Image.fromarray(split.images[i, 0].numpy())
        image.save(root / names[int(split.labels[i])] / f"{int(i):05d}.png")


def _small_cnn(data: str, out: Path, **options) -> float:
    """The default recipe of the default network, as `cnnlab train --data DATA` on gray images."""
    run = cnnlab.train(data=data, model="fast", out=str(out), threads=2, quiet=True,
                       log="none", **options)
    return round(run.test_accuracy, 4)


def _peak_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def main() -> None:
    task = sys.argv[1] if len(sys.argv) > 1 else "shipped"
    with tempfile.TemporaryDirectory() as folder:
        numbers = globals()[task](Path(folder))
    print(json.dumps({"task": task, **numbers}))


if __name__ == "__main__":
    main()
