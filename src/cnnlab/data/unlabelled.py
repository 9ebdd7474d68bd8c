"""Images without labels: a folder of them read as a split, and a split added to the training
images once something has labelled it (a teacher, in distillation)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ..base.errors import CnnlabError
from ..base.fileio import is_dir
from ..config import DataConfig
from .folder import image_entries
from .splits import DatasetSplits, FileImages, Split, TensorImages


def _known_paths(data: DatasetSplits) -> set[Path]:
    """The files the data's splits are read from (built-in arrays have none)."""
    return {Path(p).resolve() for split in (data.train, data.val, data.test) if split is not None
            for p in (getattr(split, "paths", None) or [])}


def unlabelled_split(folder: str | Path, data: DatasetSplits,
                     config: DataConfig) -> tuple[FileImages, int]:
    """Every image under `folder` (recursively) but those the data's splits already hold (a test
    image here would leak into training); returns the split (labels 0 until labelled) and how
    many images were left out as already in the data."""
    root = Path(folder)
    if not is_dir(root):
        raise CnnlabError(f"--unlabelled {folder}: no such folder")
    known = _known_paths(data)
    found = image_entries(root)
    paths = [path for path in found if path.resolve() not in known]
    if not paths:
        left = f" ({len(found)} are the data's own images)" if found else ""
        raise CnnlabError(f"--unlabelled {folder}: no images in it{left}; give a folder of "
                          f"image files (.jpg, .png, ...)")
    return (FileImages(paths, [0] * len(paths), data.input_shape, config.strict, config.workers,
                       config.resize_filter), len(found) - len(paths))


def _joined(first: Split, extra: TensorImages) -> Split:
    """A training split and labelled images decoded in memory (their paths kept)."""
    if isinstance(first, FileImages):
        return FileImages([*first.paths, *(extra.paths or [])],
                          [*first.labels.tolist(), *extra.labels.tolist()], first.shape,
                          first.strict, first.workers, first.interpolation)
    paths = None if first.paths is None else [*first.paths, *(extra.paths or [])]
    return TensorImages(torch.cat([first.images, extra.images]),
                        torch.cat([first.labels, extra.labels]), paths)


def with_extra_training(data: DatasetSplits, extra: TensorImages, source: str) -> DatasetSplits:
    """The data with `extra` labelled images after its training images."""
    sources = {**data.sources, "train": f"{data.sources.get('train', 'train')} + {source}"}
    return dataclasses.replace(data, train=_joined(data.train, extra), sources=sources)
