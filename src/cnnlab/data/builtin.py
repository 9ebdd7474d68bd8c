"""Built-in datasets: Fashion-MNIST (default), MNIST, CIFAR-10 and scikit-learn's digits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..base.errors import CnnlabError
from ..base.limits import offline
from ..config import DataConfig
from .idx import read_idx
from .registry import register_dataset
from .splits import DatasetSplits, TensorImages, split_off

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def cache_dir() -> Path:
    """Where downloads go: $CNNLAB_CACHE, else ~/.cache/cnnlab."""
    return Path(os.environ.get("CNNLAB_CACHE", Path.home() / ".cache" / "cnnlab"))


def _idx_folders(name: str, torchvision_name: str) -> list[Path]:
    folders = [cache_dir() / name, cache_dir() / name / torchvision_name / "raw"]
    return [DEBIAN_FASHION, *folders] if name == "fashion-mnist" else folders


def find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def idx_folder(name: str, torchvision_name: str) -> Path | None:
    for folder in _idx_folders(name, torchvision_name):
        if all(find_idx(folder, stem) for pair in _IDX_FILES.values() for stem in pair):
            return folder
    return None


def _download(name: str, torchvision_cls: str) -> None:
    """torchvision's own download into the cache; a clear error where there is no internet."""
    how = (f"run `cnnlab datasets --download {name}` on a machine with internet, or put its "
           f"files in {cache_dir() / name}")
    if offline():
        raise CnnlabError(f"{name} is not on this machine and downloads are off (CNNLAB_OFFLINE); "
                          f"{how}")
    import torchvision.datasets as tvd

    try:
        for train in (True, False):
            getattr(tvd, torchvision_cls)(str(cache_dir() / name), train=train, download=True)
    except Exception as error:  # noqa: BLE001  (network errors come in many types)
        raise CnnlabError(f"{name} is not on this machine and could not be downloaded "
                          f"({type(error).__name__}); {how}") from None


def download(name: str) -> None:
    """Fetch a built-in dataset into the cache (for `cnnlab datasets --download NAME`)."""
    sources = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST", "cifar10": "CIFAR10"}
    if name not in sources:
        from ..base.errors import unknown

        raise unknown("downloadable dataset", name, sources)
    _download(name, sources[name])


def _load_idx_splits(name: str, torchvision_cls: str, class_names: list[str],
                     config: DataConfig, flip_ok: bool) -> DatasetSplits:
    folder = idx_folder(name, torchvision_cls)
    if folder is None:
        _download(name, torchvision_cls)
        folder = idx_folder(name, torchvision_cls)
        if folder is None:
            raise CnnlabError(f"{name}: download finished but the IDX files are missing")
    parts = {}
    for split, (images_stem, labels_stem) in _IDX_FILES.items():
        images = read_idx(find_idx(folder, images_stem))  # (N, 28, 28)
        labels = read_idx(find_idx(folder, labels_stem))  # (N,)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise CnnlabError(f"{folder}: {split} images and labels do not match")
        parts[split] = TensorImages(torch.from_numpy(images.copy()).unsqueeze(1),
                                    torch.from_numpy(labels.astype(np.int64)))
    train, val = split_off(parts["train"], config.val_fraction, config.split_seed)
    return DatasetSplits(name, class_names, train, val, parts["test"], flip_ok=flip_ok)


@register_dataset("fashion-mnist", "Zalando's 28x28 grayscale clothing, 10 classes, 60k/10k",
                  lambda: idx_folder("fashion-mnist", "FashionMNIST") is not None,
                  lambda: str(idx_folder("fashion-mnist", "FashionMNIST")
                              or cache_dir() / "fashion-mnist"))
def fashion_mnist(config: DataConfig) -> DatasetSplits:
    return _load_idx_splits("fashion-mnist", "FashionMNIST", FASHION_CLASSES, config, True)


@register_dataset("mnist", "handwritten digits, 28x28 grayscale, 10 classes, 60k/10k",
                  lambda: idx_folder("mnist", "MNIST") is not None,
                  lambda: str(idx_folder("mnist", "MNIST") or cache_dir() / "mnist"))
def mnist(config: DataConfig) -> DatasetSplits:
    return _load_idx_splits("mnist", "MNIST", [str(d) for d in range(10)], config, False)


def _cifar_folder() -> Path:
    return cache_dir() / "cifar10"


def _cifar_present() -> bool:
    return (_cifar_folder() / "cifar-10-batches-py" / "test_batch").is_file()


@register_dataset("cifar10", "32x32 RGB photos, 10 classes, 50k/10k", _cifar_present,
                  lambda: str(_cifar_folder()))
def cifar10(config: DataConfig) -> DatasetSplits:
    if not _cifar_present():
        _download("cifar10", "CIFAR10")
    import torchvision.datasets as tvd

    parts = {}
    for split, train in (("train", True), ("test", False)):
        data = tvd.CIFAR10(str(_cifar_folder()), train=train, download=False)
        images = torch.from_numpy(data.data).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32)
        parts[split] = TensorImages(images, torch.tensor(data.targets))
        class_names = list(data.classes)
    train, val = split_off(parts["train"], config.val_fraction, config.split_seed)
    return DatasetSplits("cifar10", class_names, train, val, parts["test"], flip_ok=True)


@register_dataset("digits", "scikit-learn's bundled 8x8 handwritten digits, 1797 images",
                  lambda: True, lambda: "bundled with scikit-learn")
def digits(config: DataConfig) -> DatasetSplits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Values are 0..16; scale to the 0..255 range every other dataset uses.
    images = torch.from_numpy((bunch.images * (255 / 16)).round().astype(np.uint8)).unsqueeze(1)
    everything = TensorImages(images, torch.from_numpy(bunch.target.astype(np.int64)))
    rest, test = split_off(everything, 0.2, seed=0)  # a fixed test split, whatever the run seed
    train, val = split_off(rest, config.val_fraction, config.split_seed)
    return DatasetSplits("digits", [str(d) for d in range(10)], train, val, test, flip_ok=False)
