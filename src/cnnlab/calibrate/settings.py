"""`cnnlab calibrate`'s settings."""

from __future__ import annotations

from dataclasses import dataclass

from ..base.settings import option
from ..config.common import DEVICE_HELP, QUIET_HELP
from ..run.unknown_scores import DEFAULT_UNKNOWN_SCORE, SCORE_NAMES, scores_help


@dataclass(frozen=True)
class CalibrateSettings:
    score: str = option(DEFAULT_UNKNOWN_SCORE, f"what tells known images from others: {scores_help()}",
                        choices=SCORE_NAMES, kind="--score value")
    keep: float = option(0.95, "share of the validation images the unknown threshold keeps",
                         above=0, below=1)
    temperature: bool = option(True, "fit temperature scaling of the probabilities")
    train_images: int = option(5000, "training images whose features the mahalanobis score "
                                     "describes (the first N)", minimum=2)
    device: str = option("auto", DEVICE_HELP)
    quiet: bool = option(False, QUIET_HELP)
