"""What is checked, and one decoding pass over it: every image of every split, with a name a person
can act on (its path, or split:index in a built-in dataset), and per image its size, colour mode,
a hash of its decoded pixels, a difference hash (and its mirror image's), how blank it is, and the
pixels each embedding takes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset

from ..base.errors import CnnlabError
from ..config import DataConfig
from ..data import load_dataset
from ..data.images import ImageReadError, convert_mode, image_to_tensor, open_image, tensor_to_image
from ..data.splits import DatasetSplits, FileImages, TensorImages

SPLITS = ("train", "val", "test")
HASH_SIDE = 8  # dhash of 8x8 differences: 64 bits
STATS_SIDE = 64  # blankness is measured on a thumbnail of this side


@dataclass
class Items:
    """Every image of the data, splits one after another (train, val, test)."""

    names: list[str]  # a path relative to the data folder, or "train:123" for a built-in set
    paths: list[Path | None]
    splits: np.ndarray  # (N,) "train" | "val" | "test"
    labels: np.ndarray  # (N,) int64
    class_names: list[str]
    data: str
    tensors: torch.Tensor | None = None  # built-in sets: uint8 (N, C, H, W), all in memory

    def __len__(self) -> int:
        return len(self.names)


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def load_items(data: str) -> Items:
    """The data as `train --data` reads it, every split whole (nothing held out for validation),
    files left undecoded: the scan decodes each once and names the ones that fail."""
    splits = load_dataset(DataConfig(name=data, val_fraction=0, stream=True))
    parts = [(name, getattr(splits, name)) for name in SPLITS if getattr(splits, name) is not None]
    labels = np.concatenate([split.labels.numpy() for _, split in parts])
    names_of = np.concatenate([np.full(len(split), name) for name, split in parts])
    if all(isinstance(split, FileImages) for _, split in parts):
        root = _data_root(data)
        paths = [path for _, split in parts for path in split.paths]
        names = [_relative(path, root) for path in paths]
        return Items(names, paths, names_of, labels, splits.class_names, data)
    if not all(isinstance(split, TensorImages) for _, split in parts):
        raise CnnlabError(f"{data}: mixed in-memory and file splits cannot be checked")
    names = [f"{name}:{index}" for name, split in parts for index in range(len(split))]
    tensors = torch.cat([split.images for _, split in parts])
    return Items(names, [None] * len(names), names_of, labels, splits.class_names, data, tensors)


def _data_root(data: str) -> Path:
    path = Path(data).expanduser().resolve()
    return path.parent if path.suffix.lower() == ".csv" else path


def dataset_of(data: str) -> DatasetSplits:
    """The data's splits as loaded for a check (for the caller that wants shapes and classes)."""
    return load_dataset(DataConfig(name=data, val_fraction=0, stream=True))


@dataclass
class Scan:
    """What one pass over the images found; rows follow Items."""

    ok: np.ndarray  # (N,) bool: decoded
    errors: dict[int, str]  # index -> why it could not be read
    widths: np.ndarray
    heights: np.ndarray
    modes: list[str]
    pixel_hashes: list[str]
    dhashes: np.ndarray  # (N,) uint64
    mirror_dhashes: np.ndarray  # (N,) uint64: of the mirror image
    spread: np.ndarray  # (N,) std of the gray levels, 0..255: near 0 is a blank image


def _dhash(image: Image.Image) -> int:
    import imagehash

    bits = imagehash.dhash(image, hash_size=HASH_SIDE).hash.flatten()
    return int(np.packbits(bits).view(">u8")[0])


def describe(image: Image.Image) -> dict:
    """The facts of one decoded image that need no model."""
    rgb = convert_mode(image, 3)
    digest = hashlib.sha1(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()
    gray = rgb.convert("L")
    small = gray.resize((STATS_SIDE, STATS_SIDE), Image.Resampling.BILINEAR)
    return {"width": image.width, "height": image.height, "mode": image.mode, "hash": digest,
            "dhash": _dhash(gray), "mirror": _dhash(ImageOps.mirror(gray)),
            "spread": float(np.asarray(small, dtype=np.float32).std())}


Input = tuple[tuple[int, int, int], str]  # an embedding's (C, H, W) and interpolation


class _Decode(Dataset):
    """One item: (index, facts or None, one model input per Input or None, error)."""

    def __init__(self, items: Items, inputs: list[Input]) -> None:
        self.items, self.inputs = items, inputs

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        try:
            if self.items.tensors is not None:
                image = tensor_to_image(self.items.tensors[index])
            else:
                image = open_image(self.items.paths[index])
            pixels = [image_to_tensor(image, *shape, interpolation)
                      for shape, interpolation in self.inputs]
            return index, describe(image), pixels, ""
        except ImageReadError as error:
            return index, None, None, str(error)


def _collate(batch: list) -> list:
    return batch


def decoded_batches(items: Items, inputs: list[Input], batch_size: int,
                    workers: int) -> Iterator[list]:
    """Batches of (index, facts, [model input (C, H, W) uint8 per Input], error), in order; each
    file is decoded once, in `workers` processes, however many embeddings take it."""
    loader = DataLoader(_Decode(items, inputs), batch_size=batch_size, collate_fn=_collate,
                        num_workers=workers)
    yield from loader


def empty_scan(count: int) -> Scan:
    return Scan(np.zeros(count, bool), {}, np.zeros(count, np.int64), np.zeros(count, np.int64),
                [""] * count, [""] * count, np.zeros(count, np.uint64), np.zeros(count, np.uint64),
                np.zeros(count, np.float32))


def record(scan: Scan, index: int, facts: dict | None, error: str) -> None:
    if facts is None:
        scan.errors[index] = error
        return
    scan.ok[index] = True
    scan.widths[index], scan.heights[index] = facts["width"], facts["height"]
    scan.modes[index], scan.pixel_hashes[index] = facts["mode"], facts["hash"]
    scan.dhashes[index], scan.mirror_dhashes[index] = facts["dhash"], facts["mirror"]
    scan.spread[index] = facts["spread"]
