"""`cnnlab calibrate`'s settings."""

from __future__ import annotations

from dataclasses import dataclass

from ..base.settings import option
from ..config.common import DEVICE_HELP, QUIET_HELP

UNKNOWN_SCORE_CHOICES = ("msp", "energy", "maxlogit", "mahalanobis")
DEFAULT_UNKNOWN_SCORE = "energy"  # chosen by bench/unknown.py (BENCHMARKS.md, "Unknown images")


@dataclass(frozen=True)
class CalibrateSettings:
    score: str = option(DEFAULT_UNKNOWN_SCORE, "what tells known images from others: msp (softmax "
                                               "probability), energy, maxlogit or mahalanobis "
                                               "(distance of the features to the classes)",
                        choices=UNKNOWN_SCORE_CHOICES, kind="--score value")
    keep: float = option(0.95, "share of the validation images the unknown threshold keeps",
                         above=0, below=1)
    temperature: bool = option(True, "fit temperature scaling of the probabilities")
    train_images: int = option(5000, "training images whose features the mahalanobis score "
                                     "describes (the first N)", minimum=2)
    device: str = option("auto", DEVICE_HELP)
    quiet: bool = option(False, QUIET_HELP)
