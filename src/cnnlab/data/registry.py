"""The dataset registry: named datasets, plus folders of images and CSV manifests by path."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import DataConfig
from ..errors import CnnlabError, unknown
from ..fileio import is_dir, is_file
from .splits import DatasetSplits, convert_splits, first_per_class

log = logging.getLogger("cnnlab")

Loader = Callable[[DataConfig], DatasetSplits]


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    description: str
    load: Loader
    is_present: Callable[[], bool]
    where: Callable[[], str]


_DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(name: str, description: str, is_present: Callable[[], bool],
                     where: Callable[[], str]) -> Callable[[Loader], Loader]:
    def decorate(load: Loader) -> Loader:
        if name in _DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")
        _DATASETS[name] = DatasetEntry(name, description, load, is_present, where)
        return load

    return decorate


def list_datasets() -> list[DatasetEntry]:
    from . import builtin  # noqa: F401  (registers the named datasets)

    return list(_DATASETS.values())


def _check_shape_settings(config: DataConfig) -> None:
    """--channels and --image-size, checked once for every kind of dataset."""
    if config.channels not in (None, 1, 3):
        raise CnnlabError(f"--channels must be 1 or 3, got {config.channels}")
    if config.image_size is not None and config.image_size < 1:
        raise CnnlabError(f"--image-size must be a positive number, got {config.image_size}")


def photo_shape(config: DataConfig) -> tuple[int, int, int] | None:
    """(channels, height, width) of the smallest sampled training image of a folder or CSV, or
    None for a named dataset (and a path that is not there: loading it says what is wrong)."""
    from . import builtin  # noqa: F401
    from .folder import sampled_shape

    path = Path(config.name).expanduser()
    if config.name in _DATASETS or not (is_dir(path) or path.suffix.lower() == ".csv"
                                        and is_file(path)):
        return None
    try:
        return sampled_shape(path)
    except CnnlabError:
        return None  # a malformed folder or manifest: loading it reports the problem


def load_dataset(config: DataConfig) -> DatasetSplits:
    """Load a named dataset, a folder of class subfolders, or a CSV manifest of path,label."""
    from . import builtin  # noqa: F401
    from .folder import load_csv, load_folder

    _check_shape_settings(config)

    path = Path(config.name).expanduser()
    if config.name in _DATASETS:
        splits = convert_splits(_DATASETS[config.name].load(config), config.channels,
                                config.image_size, config.interpolation)
    elif path.suffix.lower() == ".csv":
        splits = load_csv(path, config)
    elif path.is_dir():
        splits = load_folder(path, config)
    elif "/" in config.name or path.suffix:
        raise CnnlabError(f"data {config.name!r}: no such folder or CSV file")
    else:
        raise unknown("dataset", config.name, _DATASETS)
    if config.per_class is not None:
        splits.train = first_per_class(splits.train, config.per_class)
    if splits.skipped:
        log.warning("skipped %d unreadable image file(s); use --strict to stop on them",
                    len(splits.skipped))
    return splits
