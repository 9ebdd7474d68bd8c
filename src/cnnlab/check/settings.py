"""`cnnlab check`'s settings."""

from __future__ import annotations

from dataclasses import dataclass

from ..base.settings import option
from ..config.common import DEVICE_HELP, QUIET_HELP


@dataclass(frozen=True)
class CheckSettings:
    run: str | None = option(None, "embed the images with this run's network (default: pretrained "
                                   "EfficientNet-Lite0 for photos, pixels and a small CNN per fold "
                                   "for small images); its data when DATA is not given",
                             metavar="RUN")
    out: str | None = option(None, "results folder (default RUN/check with --run, else "
                                   "checks/DATA)", metavar="DIR")
    folds: int = option(5, "cross-validation folds for the out-of-sample probabilities "
                           "(fewer where a class has fewer images)", minimum=2)
    epochs: int = option(3, "small images: epochs of the CNN trained per fold", minimum=1)
    # On flowers12 as it ships, 0.97 and 4 bits find every near copy a person confirms (crops,
    # shifts, colour changes, mirror images) and no false pair (BENCHMARKS.md).
    similarity: float | None = option(None, "near copies: cosine similarity of the embeddings from "
                                            "which two images are copies (default 0.97; 0.99 for "
                                            "pixels)", minimum=0, maximum=1)
    hash_bits: int | None = option(None, "near copies: difference-hash bits (of 64) that may "
                                         "differ, an image or its mirror image (default 4 for "
                                         "photos, off for small images; -1 turns the hash off)",
                                   minimum=-1, maximum=64)
    seed: int = option(0, "seed of the folds and of the per-fold CNN", minimum=0)
    batch_size: int = option(64, "images per forward pass", minimum=1)
    workers: int = option(2, "processes that decode image files", minimum=0, maximum=256)
    threads: int | None = option(None, "CPU threads (default: one per physical core)", minimum=1,
                                 maximum=1024)
    device: str = option("auto", DEVICE_HELP)
    quiet: bool = option(False, QUIET_HELP)
