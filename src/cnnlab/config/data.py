"""The data and augmentation settings of a run: read by training, the run folder, attack and tune."""

from __future__ import annotations

from dataclasses import dataclass

from ..base.settings import option
from .common import DEFAULT_INTERPOLATION, INTERPOLATIONS
from .training_text import by_recipe


@dataclass
class DataConfig:
    name: str = option("fashion-mnist", "dataset name, folder of class folders, or CSV manifest",
                       flag="--data", metavar="DATA")
    val_fraction: float = option(0.1, "share of train held out for validation (when the data has "
                                      "no val split)", minimum=0, below=1)
    # A folder without test/ (or a CSV without test rows) has nothing held out to report on
    # unless a share of it is set aside before anything is fitted.
    test_fraction: float = option(0.0, "share of train held out as the test split (when the data "
                                       "has no test split)", minimum=0, below=1)
    split_seed: int = option(0, "seed of the held-out split (the same images for every run)", minimum=0)
    image_size: int | None = option(None, "resize images to this square side (default: as stored)",
                                    minimum=1, maximum=4096)
    channels: int | None = option(None, "1 (grayscale) or 3 (RGB); default: as the images are",
                                  minimum=1, maximum=3)
    strict: bool = option(False, "stop on an unreadable image instead of skipping it")
    stream: bool | None = option(None, "stream image files instead of holding them in memory "
                                       "(default: hold them when they fit)")
    workers: int = option(2, "DataLoader workers that decode image files", minimum=0, maximum=256)
    per_class: int | None = option(None, "keep only the first N training images of each class", minimum=1)
    # Unset means unset: a pretrained network then gets its weights' own filter, anything else
    # DEFAULT_INTERPOLATION (`resize_filter`), and config.yaml records the one used.
    interpolation: str | None = option(None, f"resizing filter (default {DEFAULT_INTERPOLATION}; "
                                             f"a pretrained network's own)",
                                       choices=INTERPOLATIONS,
                                       kind="interpolation")
    exclude: str | None = option(None, "leave out the images this file names: a check.csv (its "
                                       "rows marked exclude) or a list of files, one a line",
                                 metavar="FILE")
    # Recorded when the data is first loaded, so config.yaml says which list the run left out.
    exclude_sha256: str | None = option(None, "SHA-256 of the --exclude file", cli=False)

    @property
    def resize_filter(self) -> str:
        return self.interpolation or DEFAULT_INTERPOLATION


@dataclass
class AugmentConfig:
    # Off by default: it costs accuracy in short runs and pays off in longer training (the
    # fashion-long preset; BENCHMARKS.md).
    crop_padding: int = option(0, "random crop after padding by this many pixels; 0 turns it off", minimum=0)
    flip: bool | None = option(None, "random horizontal flips (default: where the data allows)")
    erasing: float = option(0.0, "random erasing probability", minimum=0, maximum=1)
    rotation: float = option(0.0, "random rotation, max degrees", minimum=0, maximum=180)
    # torchvision's RandomResizedCrop, scaled to crop_size. None: the recipe's.
    resized_crop: float | None = option(
        None, "random resized crops keeping at least this share of the area, 0 = off "
              f"({by_recipe('augment.resized_crop')})", minimum=0, maximum=1)
    # Smaller is faster, and testing at a higher resolution than training is better (FixRes,
    # Touvron 2019). None: 6/7 of the input side fine-tuning, else the input side.
    crop_size: int | None = option(
        None, "with --resized-crop: train on crops of this side (default: 6/7 of the input "
              "fine-tuning); evaluation keeps the input size", minimum=1, maximum=4096)

