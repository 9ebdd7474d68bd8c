"""The dataset registry: named datasets, plus folders of images and CSV manifests by path."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..base.errors import CnnlabError, unknown
from ..base.fileio import is_dir, is_file
from ..config import DataConfig
from .splits import DatasetSplits, convert_splits, first_per_class, held_out_source, split_off

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

    _record_exclude_list(config)
    path = Path(config.name).expanduser()
    if config.name in _DATASETS and config.exclude:
        splits = convert_splits(_load_builtin_excluding(config), config.channels,
                                config.image_size, config.resize_filter)
    elif config.name in _DATASETS:
        splits = convert_splits(_DATASETS[config.name].load(config), config.channels,
                                config.image_size, config.resize_filter)
    elif path.suffix.lower() == ".csv":
        splits = load_csv(path, config)
    elif path.is_dir():
        splits = load_folder(path, config)
    elif "/" in config.name or path.suffix:
        raise CnnlabError(f"data {config.name!r}: no such folder or CSV file")
    else:
        raise unknown("dataset", config.name, _DATASETS)
    if not splits.sources:  # a named dataset: its own training and test sets
        splits.sources = _builtin_sources(splits, config)
    if config.per_class is not None:
        splits.train = first_per_class(splits.train, config.per_class)
    if splits.skipped:
        log.warning("skipped %d unreadable image file(s); use --strict to stop on them",
                    len(splits.skipped))
    return splits


def _builtin_sources(splits: DatasetSplits, config: DataConfig) -> dict[str, str]:
    sources = {"train": f"{splits.name}'s training set", "test": f"{splits.name}'s test set"}
    if splits.val is not None:
        sources["val"] = held_out_source(config.val_fraction, "the training set", config.split_seed)
    return sources


def _record_exclude_list(config: DataConfig) -> None:
    """The --exclude list's SHA-256, set on the config the first time (config.yaml keeps it); a
    list changed since then is said."""
    if not config.exclude:
        return
    from .exclude import list_digest

    if not is_file(config.exclude):
        raise CnnlabError(f"--exclude {config.exclude}: no such file")
    digest = list_digest(config.exclude)
    if config.exclude_sha256 is None:
        config.exclude_sha256 = digest
    elif config.exclude_sha256 != digest:
        log.warning("--exclude %s has changed since this run was made (SHA-256 %s..., now %s...)",
                    config.exclude, config.exclude_sha256[:12], digest[:12])


def _load_builtin_excluding(config: DataConfig) -> DatasetSplits:
    """A named dataset without the images --exclude names ("train:123", "test:45"): the indices
    count the training set before the validation split is held out of what remains."""
    import dataclasses

    from .exclude import Exclusion

    exclusion = Exclusion(config.exclude)
    splits = _DATASETS[config.name].load(dataclasses.replace(config, val_fraction=0))
    if splits.val is not None:  # a dataset with its own validation split: keep it as it is
        splits.train = splits.train.subset(exclusion.keep_indices("train", len(splits.train)))
    else:
        kept = splits.train.subset(exclusion.keep_indices("train", len(splits.train)))
        splits.train, splits.val = split_off(kept, config.val_fraction, config.split_seed)
    if splits.test is not None:
        splits.test = splits.test.subset(exclusion.keep_indices("test", len(splits.test)))
    splits.excluded = exclusion.finish(config.name)
    return splits
