"""User data: a folder in ImageFolder layout, or a CSV manifest of path,label rows."""

from __future__ import annotations

import csv
import logging
import os
from itertools import islice
from pathlib import Path

from PIL import Image

from ..base.errors import CnnlabError
from ..base.fileio import is_dir, is_file
from ..config import DataConfig
from .images import ALLOWED_FORMATS, is_grayscale, is_image_file
from .splits import DatasetSplits, FileImages, Split, held_out_source, split_off

log = logging.getLogger("cnnlab")

IN_MEMORY_BUDGET = 2 * 1024**3  # decoded uint8 bytes held in memory before switching to streaming
DEFAULT_SIZE = 64
_SAMPLE = 32  # images looked at to choose channels and size

Samples = list[tuple[Path, str]]


def _class_folders(root: Path) -> list[Path]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise CnnlabError(f"{root} has no class folders; expected {root}/<class>/<image files>")
    return folders


def image_entries(folder: Path) -> list[Path]:
    """Every entry under `folder` with an image's name that is not a folder: the files, and the
    FIFOs, devices, symlink loops and dangling links among them, which decoding skips and names
    like any unreadable file (never opening one) rather than dropping them without a word."""
    return sorted(p for p in folder.rglob("*") if is_image_file(p) and not is_dir(p))


def _scan_classes(root: Path) -> Samples:
    samples: Samples = []
    for folder in _class_folders(root):
        files = image_entries(folder)
        if not files:
            raise CnnlabError(f"class folder {folder} has no image files "
                              f"(.jpg .png .bmp .gif .webp .tif); add images or remove it")
        samples.extend((path, folder.name) for path in files)
    return samples


def _peek(paths: list[Path]) -> list[Image.Image]:
    """Open (header only) a spread of files to see their modes and sizes."""
    step = max(1, len(paths) // _SAMPLE)
    seen = []
    for path in paths[::step][:_SAMPLE]:
        if not is_file(path):  # a FIFO would block the open: bad files are reported when decoded
            continue
        try:
            seen.append(Image.open(path, formats=ALLOWED_FORMATS))
        except Exception:  # noqa: BLE001  (bad files are reported when decoded)
            continue
    return seen


def _input_shape(paths: list[Path], config: DataConfig) -> tuple[int, int, int]:
    seen = _peek(paths)
    channels = config.channels or (1 if seen and all(is_grayscale(im) for im in seen) else 3)
    size = config.image_size
    if size is None:
        sizes = {im.size for im in seen}
        side = next(iter(sizes))[0] if len(sizes) == 1 else 0
        size = side if len(sizes) == 1 and side == next(iter(sizes))[1] and side <= 256 \
            else DEFAULT_SIZE
    for image in seen:
        image.close()
    return channels, size, size


def _sample_training_files(path: Path) -> list[Path]:
    """A few training image paths of a folder (some from every class) or of a CSV manifest."""
    if path.suffix.lower() == ".csv":
        base = path.resolve().parent
        return [(base / row[0].strip()).resolve() for row in _read_manifest(path)[:_SAMPLE]
                if len(row) > 1 and (len(row) < 3 or row[2].strip().lower() in ("", "train"))]
    root = path / "train" if (path / "train").is_dir() else path
    per_class = max(1, _SAMPLE // max(1, len(_class_folders(root))))
    return [file for folder in _class_folders(root)
            for file in islice((p for p in sorted(folder.rglob("*"))
                                if p.is_file() and is_image_file(p)), per_class)]


def sampled_shape(path: Path) -> tuple[int, int, int] | None:
    """(channels, smallest height, smallest width) over a sample of the training images, read from
    the file headers only; None when none of them opens."""
    seen = _peek(_sample_training_files(path))
    if not seen:
        return None
    shape = (1 if all(is_grayscale(im) for im in seen) else 3,
             min(im.height for im in seen), min(im.width for im in seen))
    for image in seen:
        image.close()
    return shape


def _make_split(samples: Samples, classes: list[str], shape: tuple[int, int, int],
                config: DataConfig) -> FileImages:
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted({label for _, label in samples if label not in index})
    if unknown:
        raise CnnlabError(f"labels {unknown[:5]} are not among the training classes {classes}")
    return FileImages([p for p, _ in samples], [index[label] for _, label in samples], shape,
                      config.strict, config.workers, config.resize_filter)


def _finish(name: str, parts: dict[str, Samples], config: DataConfig,
            where: dict[str, str]) -> DatasetSplits:
    """Turn sample lists into splits: in memory when they fit, streamed otherwise. `where` names
    each split's source (a folder, the CSV's rows)."""
    if not parts.get("train"):
        raise CnnlabError(f"{name}: no training images found")
    classes = sorted({label for _, label in parts["train"]})
    if len(classes) < 2:
        raise CnnlabError(f"{name}: found only the class {classes}; a classifier needs two or more")
    shape = _input_shape([p for p, _ in parts["train"]], config)
    splits: dict[str, Split | None] = {
        key: _make_split(samples, classes, shape, config) if samples else None
        for key, samples in parts.items()}
    total = sum(len(s) for s in splits.values() if s is not None)
    stream = config.stream if config.stream is not None else \
        total * shape[0] * shape[1] * shape[2] > IN_MEMORY_BUDGET
    skipped: list[Path] = []
    if not stream:
        for key, split in splits.items():
            if split is not None:
                splits[key], bad = split.to_memory()
                skipped.extend(bad)
    sources = {key: where[key] for key, split in splits.items() if split is not None}
    train, val, test = splits["train"], splits.get("val"), splits.get("test")
    if test is None:  # held out first, so validation never takes images from the test split
        train, test = split_off(train, config.test_fraction, config.split_seed, "--test-fraction")
        if test is not None:
            sources["test"] = held_out_source(config.test_fraction, where["train"],
                                              config.split_seed)
    if val is None:
        train, val = split_off(train, config.val_fraction, config.split_seed)
        if val is not None:
            sources["val"] = held_out_source(config.val_fraction, where["train"], config.split_seed)
    return DatasetSplits(name, classes, train, val, test, skipped=skipped, sources=sources)


def load_folder(root: Path, config: DataConfig) -> DatasetSplits:
    """ImageFolder layout: root/<class>/*.png, or root/{train,val,test}/<class>/*.png."""
    root = root.resolve()
    if (root / "train").is_dir():
        parts = {split: _scan_classes(root / split) if (root / split).is_dir() else []
                 for split in ("train", "val", "test")}
        where = {split: f"{root.name}/{split}/" for split in parts}
    else:
        parts = {"train": _scan_classes(root), "val": [], "test": []}
        where = {"train": f"{root.name}/"}
    return _finish_excluding(root.name, parts, root, config, where)


def _read_manifest(path: Path) -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise CnnlabError(f"cannot read CSV manifest {path}: {error}") from None
    if rows and [cell.strip().lower() for cell in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    if not rows:
        raise CnnlabError(f"CSV manifest {path} has no rows; expected path,label[,split] lines")
    return rows


def load_csv(path: Path, config: DataConfig) -> DatasetSplits:
    """A CSV of path,label[,split] rows; paths are relative to the CSV and may not leave its folder."""
    if not path.is_file():
        raise CnnlabError(f"CSV manifest {path} does not exist")
    base = path.resolve().parent
    parts: dict[str, Samples] = {"train": [], "val": [], "test": []}
    for number, row in enumerate(_read_manifest(path), start=1):
        if len(row) < 2:
            raise CnnlabError(f"{path} row {number}: expected path,label, got {row}")
        image = Path(os.path.realpath(base / row[0].strip()))  # a symlink loop: named when decoded
        if not image.is_relative_to(base):
            raise CnnlabError(f"{path} row {number}: {row[0]!r} points outside the CSV's folder; "
                              f"refusing it")
        split = row[2].strip().lower() if len(row) > 2 and row[2].strip() else "train"
        if split not in parts:
            raise CnnlabError(f"{path} row {number}: split must be train, val or test, got {split!r}")
        parts[split].append((image, row[1].strip()))
    where = {split: f"{path.name} rows marked {split}" for split in parts}
    where["train"] = f"{path.name} rows marked train (or unmarked)"
    return _finish_excluding(path.stem, parts, base, config, where)


def _finish_excluding(name: str, parts: dict[str, Samples], root: Path, config: DataConfig,
                      where: dict[str, str]) -> DatasetSplits:
    """The splits without the files --exclude names, left out before the validation split is
    held out; the splits record how many each lost."""
    if not config.exclude:
        return _finish(name, parts, config, where)
    from .exclude import Exclusion

    exclusion = Exclusion(config.exclude)
    kept = {split: exclusion.keep_files(split, samples, root) for split, samples in parts.items()}
    excluded = exclusion.finish(config.name)
    splits = _finish(name, kept, config, where)
    splits.excluded = excluded
    return splits
