"""Dataset splits: in-memory uint8 tensors, or image files streamed through a DataLoader."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from ..base.errors import CnnlabError
from .images import ImageReadError, convert_tensor_images, load_image_tensor

log = logging.getLogger("cnnlab")

Batch = tuple[torch.Tensor, torch.Tensor]  # uint8 (B, C, H, W), int64 (B,)


class TensorImages:
    """A split held in memory as uint8 (N, C, H, W) images: batches are slices, no Python per image.
    Images decoded from files keep their files' paths (`paths`, one per image), so that results
    name them; built-in arrays have none."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor,
                 paths: list[Path] | None = None) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("images must be a uint8 (N, C, H, W) tensor")
        if paths is not None and len(paths) != len(images):
            raise ValueError("paths must name every image")
        self.images = images
        self.labels = labels.long()
        self.paths = paths

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: torch.Tensor) -> TensorImages:
        paths = None if self.paths is None else [self.paths[i] for i in indices.tolist()]
        return TensorImages(self.images[indices], self.labels[indices], paths)

    def batches(self, batch_size: int, order: torch.Tensor | None = None) -> Iterator[Batch]:
        for start in range(0, len(self) if order is None else len(order), batch_size):
            if order is None:
                yield self.images[start:start + batch_size], self.labels[start:start + batch_size]
            else:
                index = order[start:start + batch_size]
                yield self.images[index], self.labels[index]


class DecodeFiles(Dataset):
    """Decodes one file per item to uint8 (C, H, W); a bad file yields None and the reason, which
    the main process reports (or, with strict, raises: an error raised in a DataLoader worker would
    reach the user wrapped in the worker's traceback)."""

    def __init__(self, paths: list[Path], labels: list[int], shape: tuple[int, int, int],
                 strict: bool, interpolation: str = "bilinear", crop_pct: float = 1.0) -> None:
        self.paths, self.labels, self.shape, self.strict = paths, labels, shape, strict
        self.resize = (interpolation, crop_pct)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, int, int, str]:
        try:
            image = load_image_tensor(self.paths[index], *self.shape, *self.resize)
            return image, self.labels[index], index, ""
        except ImageReadError as error:
            return None, self.labels[index], index, str(error)  # reported by the main process


def collate_decoded(items: list) -> tuple[torch.Tensor, torch.Tensor, list[int], list[tuple[int, str]]]:
    """Stack the decoded images; returns (images, labels, their indices, [(index, reason)] failed)."""
    good = [item for item in items if item[0] is not None]
    bad = [(item[2], item[3]) for item in items if item[0] is None]
    indices = [item[2] for item in good]
    if not good:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.long), indices, bad
    return (torch.stack([item[0] for item in good]),
            torch.tensor([item[1] for item in good], dtype=torch.long), indices, bad)


class FileImages:
    """A split streamed from image files: decoded in DataLoader workers, batched as uint8."""

    def __init__(self, paths: list[Path], labels: list[int], shape: tuple[int, int, int],
                 strict: bool = False, workers: int = 2, interpolation: str = "bilinear") -> None:
        self.paths, self.shape, self.strict, self.workers = paths, shape, strict, workers
        self.interpolation = interpolation
        self.labels = torch.tensor(labels, dtype=torch.long)
        self._reported: set[Path] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: torch.Tensor) -> FileImages:
        chosen = indices.tolist()
        return FileImages([self.paths[i] for i in chosen], self.labels[indices].tolist(),
                          self.shape, self.strict, self.workers, self.interpolation)

    def _loader(self, batch_size: int, order: torch.Tensor | None) -> DataLoader:
        dataset = DecodeFiles(self.paths, self.labels.tolist(), self.shape, self.strict,
                              self.interpolation)
        sampler = order.tolist() if order is not None else None
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                          collate_fn=collate_decoded, num_workers=self.workers)

    def batches(self, batch_size: int, order: torch.Tensor | None = None) -> Iterator[Batch]:
        for images, labels, _, bad in self._loader(batch_size, order):
            self._report(bad)
            if len(labels):
                yield images, labels

    def _report(self, bad: list[tuple[int, str]]) -> None:
        if bad and self.strict:
            raise CnnlabError(f"unreadable image {bad[0][1]} (drop --strict to skip such files)")
        for index, reason in bad:
            if self.paths[index] not in self._reported:  # once per file, not once per epoch
                self._reported.add(self.paths[index])
                log.warning("skipping unreadable image %s", reason)

    def to_memory(self) -> tuple[TensorImages, list[Path]]:
        """Decode every file once (in parallel); returns the tensors and the skipped paths."""
        images, labels, kept, skipped = [], [], [], []
        for batch_images, batch_labels, indices, bad in self._loader(256, None):
            if len(batch_labels):
                images.append(batch_images)
                labels.append(batch_labels)
                kept.extend(self.paths[i] for i in indices)
            self._report(bad)
            skipped.extend(self.paths[i] for i, _ in bad)
        if not images:
            raise CnnlabError(f"none of the {len(self)} image files could be read")
        return TensorImages(torch.cat(images), torch.cat(labels), kept), skipped


Split = TensorImages | FileImages


@dataclass
class DatasetSplits:
    """What every dataset loader returns; the model's input contract comes from here."""

    name: str
    class_names: list[str]
    train: Split
    val: Split | None
    test: Split | None
    flip_ok: bool = True  # False where a mirror image changes the class (digits, letters)
    skipped: list[Path] = field(default_factory=list)
    # Where each split's images come from ("train/", "10% of train/ held out ..."), so training
    # can say which folder is used for what before it fits anything.
    sources: dict[str, str] = field(default_factory=dict)
    # How many images of each split --exclude left out ({"train": 58}); the card records it.
    excluded: dict[str, int] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        if isinstance(self.train, TensorImages):
            return tuple(self.train.images.shape[1:])  # type: ignore[return-value]
        return self.train.shape

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def convert_splits(splits: DatasetSplits, channels: int | None, size: int | None,
                   interpolation: str = "bilinear") -> DatasetSplits:
    """Give in-memory splits the channels and size asked for (--channels, --image-size)."""
    for name in ("train", "val", "test"):
        split = getattr(splits, name)
        if isinstance(split, TensorImages):
            setattr(splits, name, TensorImages(
                convert_tensor_images(split.images, channels, size, interpolation), split.labels,
                split.paths))
    return splits


def first_per_class_indices(labels: torch.Tensor, count: int) -> torch.Tensor:
    """Indices, in order, of the first `count` images of each class among `labels` (N,)."""
    if count < 1:
        raise CnnlabError(f"--per-class must be at least 1, got {count}")
    onehot = torch.nn.functional.one_hot(labels).cumsum(0)  # (N, K): running count per class
    rank = onehot.gather(1, labels[:, None])[:, 0]  # how many of its class came up to here
    return torch.nonzero(rank <= count).flatten()


def first_per_class(split: Split, count: int) -> Split:
    """The first `count` images of each class (for few-shot experiments)."""
    return split.subset(first_per_class_indices(split.labels, count))


def split_off(split: Split, fraction: float, seed: int,
              flag: str = "--val-fraction") -> tuple[Split, Split | None]:
    """Hold out `fraction` of each class (in a fixed random order of `seed`) for validation (or,
    with flag "--test-fraction", testing), so the held-out split has the classes in the training
    proportions: a plain random pick of 12 from 3 classes of 60 gave 2/8/3."""
    if fraction <= 0:
        return split, None
    if not 0 < fraction < 1:
        raise CnnlabError(f"{flag} must be in [0, 1), got {fraction}")
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    labels = split.labels[order]
    held = torch.zeros(len(order), dtype=torch.bool)
    for label in labels.unique():
        positions = torch.nonzero(labels == label).flatten()
        held[positions[:round(len(positions) * fraction)]] = True
    if not held.any() or held.all():
        raise CnnlabError(f"{flag} {fraction} leaves no images for training or "
                          f"{'testing' if 'test' in flag else 'validation'} ({len(split)} images)")
    return split.subset(order[~held]), split.subset(order[held])


def channel_stats(split: Split, max_images: int = 20000) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units, from (up to max_images of) the training split."""
    count, sums, squares = 0, None, None
    for images, _ in split.batches(1024):
        pixels = images.to(torch.float64).div_(255).transpose(0, 1).flatten(1)  # (C, B*H*W)
        sums = pixels.sum(1) if sums is None else sums + pixels.sum(1)
        squares = (pixels**2).sum(1) if squares is None else squares + (pixels**2).sum(1)
        count += pixels.shape[1]
        if count >= max_images * images.shape[2] * images.shape[3]:
            break
    mean = sums / count
    std = (squares / count - mean**2).clamp_min(1e-12).sqrt().clamp_min(1e-3)
    return [round(float(m), 6) for m in mean], [round(float(s), 6) for s in std]


def held_out_source(fraction: float, source: str, seed: int) -> str:
    return f"{fraction:.0%} of {source} held out per class (seed {seed})"


def describe_splits(data: DatasetSplits) -> str:
    """One line: which images train, validate and test, and where each comes from."""
    parts = []
    for name, label in (("train", "train"), ("val", "validation"), ("test", "test")):
        split = getattr(data, name)
        where = data.sources.get(name)
        if split is None:
            parts.append(f"{label}: none")
        else:
            parts.append(f"{label} {len(split)} images" + (f" ({where})" if where else ""))
    line = "splits: " + ", ".join(parts)
    if data.test is None:
        line += " (--test-fraction 0.2 holds out a test split)"
    return line
