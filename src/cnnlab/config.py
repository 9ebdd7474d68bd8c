"""Every setting of a run, as dataclasses; YAML in and out."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import CnnlabError, suggest


@dataclass
class DataConfig:
    name: str = "fashion-mnist"  # a registered dataset, a folder of images or a CSV manifest
    val_fraction: float = 0.1  # held out of train when the data has no val split
    split_seed: int = 0  # the held-out images are the same for every run
    image_size: int | None = None  # folders and CSVs: side of the square input; None = auto
    channels: int | None = None  # 1 or 3; None = grayscale when every sampled image is
    strict: bool = False  # an unreadable image file is an error instead of being skipped
    stream: bool | None = None  # None: hold in memory when it fits, stream otherwise
    workers: int = 2  # DataLoader workers for decoding files
    per_class: int | None = None  # keep only the first N training images of each class
    interpolation: str = "bilinear"  # resizing filter: nearest | bilinear | bicubic


@dataclass
class AugmentConfig:
    # Random crop after zero padding by this many pixels; 0 = off. Off by default: in a 6-epoch
    # Fashion-MNIST run of `simple` it cost a point of test accuracy (91.4% against 92.4%); it pays
    # off in longer training (the fashion-long preset).
    crop_padding: int = 0
    flip: bool | None = None  # horizontal flip; None = where the dataset allows it
    erasing: float = 0.0  # probability of random erasing per image
    rotation: float = 0.0  # maximum rotation in degrees
    # Random resized crops (torchvision's RandomResizedCrop): the least share of the image's area a
    # crop keeps, e.g. 0.35; 0 = off. The crops are scaled to crop_size.
    resized_crop: float | None = None  # None: the recipe's (0.35 fine-tuning, else off)
    # Train on crops of this side; evaluation and prediction keep the full input size. Smaller is
    # faster, and testing at a higher resolution than training is better (FixRes, Touvron 2019).
    crop_size: int | None = None  # None: 6/7 of the input side fine-tuning, else the input side


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Settings left at None are filled in by the recipe that fits the run (train/recipes.py):
    # training from scratch, fine-tuning a pretrained backbone, or a linear probe on a frozen one.
    # A named network, a layer spec string or a YAML file; None: `fast`, or the pretrained
    # EfficientNet-Lite0 for a folder of RGB photos.
    model: str | None = None
    # None: 15 from scratch (93% test accuracy on Fashion-MNIST in about 3 minutes of training on 2
    # CPU cores, BENCHMARKS.md), 6 fine-tuning
    epochs: int | None = None
    batch_size: int | None = None  # None: 128, or 32 fine-tuning
    optimizer: str = "adamw"  # sgd | adam | adamw
    # None: 0.1 for sgd, 5e-3 for adam/adamw (peak lr with onecycle); fine-tuning 0.01 and 5e-4
    lr: float | None = None
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "onecycle"  # onecycle | cosine | step | none
    # onecycle: the fraction of training spent rising to the peak lr. A short warmup: the default
    # recipe passes 90% test accuracy after 2 epochs with 0.1, after 4 with 0.25 (at lr 3e-3).
    warmup: float = 0.1
    label_smoothing: float = 0.1
    # Test-time augmentation: predict and evaluate average the softmax of each image and its mirror
    # image (where the data allows flips); validation during training does not.
    tta: bool = False
    class_weights: bool = False  # weigh the loss by inverse class frequency (imbalanced data)
    patience: int | None = None  # stop after this many epochs without a better val accuracy
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | mps
    threads: int | None = None  # CPU threads for torch; None = one per physical core
    amp: bool = True  # mixed precision, used on CUDA only
    channels_last: bool = True  # memory format for conv layers
    out: str | None = None  # run folder; None = runs/<data>-<model>, numbered if it exists
    # Adversarial training: train on attacked batches. "fgsm" = FGSM with a random start (Wong et
    # al., 2020), "pgd" = PGD (Madry et al., 2018); None = standard training. eps in pixel units.
    adversarial: str | None = None
    adv_eps: float = 0.1
    adv_steps: int = 7  # PGD steps (FGSM takes one)
    adv_step_size: float | None = None  # None: 1.25 eps for fgsm, 2.5 eps / steps for pgd
    # Transfer learning with timm models (--model timm:NAME): ImageNet weights, and what trains.
    pretrained: bool = False
    freeze: str | None = None  # "backbone": only the head trains (feature extraction)
    freeze_epochs: int = 0  # fine-tuning: train the head alone for this many epochs first
    # fine-tuning: the backbone's learning rate as a fraction of --lr; None: the recipe's (0.2)
    backbone_lr: float | None = None
    feature_cache: bool = True  # frozen backbone and no augmentation: compute features once
    # Fine-tuning: fit the new head as an exact linear probe on the pretrained features before any
    # layer trains (LP-FT, Kumar et al. 2022).
    probe_first: bool = True
    # Fine-tuning: batch norm keeps the pretrained statistics (its scale and shift still train).
    freeze_bn: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


CONFIG_SECTIONS = {"data": DataConfig, "augment": AugmentConfig}


def _fill(cls: type, values: dict[str, Any], where: str) -> Any:
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            raise CnnlabError(f"unknown setting {where}{key!r}{suggest(key, names)}")
    return cls(**values)


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """Build a TrainConfig from nested dicts, refusing unknown keys with a suggestion."""
    if not isinstance(values, dict):
        raise CnnlabError("a run config must be a mapping of settings")
    values = dict(values)
    sections = {}
    for name, cls in CONFIG_SECTIONS.items():
        section = values.pop(name, None) or {}
        if not isinstance(section, dict):
            raise CnnlabError(f"setting {name!r} must be a mapping")
        sections[name] = _fill(cls, section, f"{name}.")
    config = _fill(TrainConfig, values, "")
    config.data, config.augment = sections["data"], sections["augment"]
    return config


PRESETS = Path(__file__).parent / "presets"


def preset_names() -> list[str]:
    """Named recipes shipped with cnnlab: `--config NAME` runs one."""
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def load_config(path: str | Path) -> TrainConfig:
    """A run config from a YAML file, or the preset of that name."""
    path = Path(path)
    if not path.is_file() and str(path) in preset_names():
        path = PRESETS / f"{path}.yaml"
    if not path.is_file():
        raise CnnlabError(f"config file {path} does not exist (presets: "
                          f"{', '.join(preset_names())}){suggest(str(path), preset_names())}")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise CnnlabError(f"config file {path} is not valid YAML: {str(error).splitlines()[0]}") \
            from None
    return config_from_dict(values)


def apply_overrides(config: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """Set dotted keys ('data.name', 'epochs') on a copy of the config."""
    values = config.to_dict()
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        (values[section] if section else values)[name] = value
    return config_from_dict(values)
