"""What training checks about its data before the first step: a batch that fits the training set,
enough steps per epoch, the classes' sizes."""

from __future__ import annotations

import dataclasses
import logging
import math

import torch

from ..config import TrainConfig
from ..data import DatasetSplits

log = logging.getLogger("cnnlab")

# An epoch should take at least this many optimizer steps: with one step per epoch the one-cycle
# schedule spends its warmup and its annealing in a step or two, and batch norm's running
# statistics see one batch (119 images in 3 classes at batch 128 ended predicting one class).
MIN_STEPS_PER_EPOCH = 10
# ...but a batch is not shrunk below this, where batch-norm statistics get noisy; 16 trained the
# 119-image folder to 92%.
SMALLEST_AUTO_BATCH = 16
# Classes this many times larger than the smallest count as strongly imbalanced.
IMBALANCE_RATIO = 3.0
COUNTS_LISTED = 12  # more classes than this: only the smallest and largest are named


def fit_batch_to_data(config: TrainConfig, train_images: int,
                      chosen: bool = False) -> tuple[TrainConfig, list[str]]:
    """The config with the recipe's batch cut down to give MIN_STEPS_PER_EPOCH steps (down to
    SMALLEST_AUTO_BATCH), and the warnings to show: the batch changed, or an epoch still has fewer
    steps. A batch the user `chosen` is kept, with the warning."""
    warnings = []
    largest = max(SMALLEST_AUTO_BATCH, train_images // MIN_STEPS_PER_EPOCH)
    if config.batch_size > largest and not chosen:
        warnings.append(f"batch size {config.batch_size} would make "
                        f"{math.ceil(train_images / config.batch_size)} step(s) per epoch on "
                        f"{train_images} training images: using {largest} instead (set "
                        f"--batch-size to choose)")
        config = dataclasses.replace(config, batch_size=largest)
    steps = math.ceil(train_images / config.batch_size)
    if steps < MIN_STEPS_PER_EPOCH:
        warnings.append(f"only {steps} optimizer step(s) per epoch ({steps * config.epochs} in "
                        f"all): few steps train poorly; more images, more --epochs or a "
                        f"--batch-size of {largest} or less help")
    return config, warnings


def class_counts(data: DatasetSplits) -> list[int]:
    return torch.bincount(data.train.labels, minlength=data.num_classes).tolist()


def describe_counts(names: list[str], counts: list[int]) -> str:
    """'training images per class: cat 50, dog 48' (the extremes only for many classes)."""
    pairs = list(zip(names, counts, strict=True))
    if len(pairs) > COUNTS_LISTED:
        ordered = sorted(pairs, key=lambda pair: pair[1])
        return (f"training images per class: {ordered[0][1]} to {ordered[-1][1]} (fewest: "
                f"{ordered[0][0]}, most: {ordered[-1][0]})")
    return "training images per class: " + ", ".join(f"{name} {count}" for name, count in pairs)


def imbalance_warning(names: list[str], counts: list[int], class_weights: bool) -> str | None:
    """A warning when the largest class has IMBALANCE_RATIO times the images of the smallest, or a
    class has none; pointing to --class-weights unless it is on."""
    smallest, largest = min(counts), max(counts)
    if smallest == 0:
        empty = [name for name, count in zip(names, counts, strict=True) if count == 0]
        return (f"no training images for class(es) {', '.join(empty[:5])}"
                f"{' ...' if len(empty) > 5 else ''}: the model cannot learn them")
    if largest >= IMBALANCE_RATIO * smallest:
        few, many = names[counts.index(smallest)], names[counts.index(largest)]
        advice = "" if class_weights else "; --class-weights weighs the loss to even it out"
        return (f"the classes are imbalanced: {few} has {smallest} training images, {many} "
                f"{largest} ({largest / smallest:.0f}x){advice}")
    return None


def warn_if_input_too_small(network: torch.nn.Module, model_name: str,
                            input_shape: tuple[int, ...]) -> None:
    """A timm network shrinks its input by its stride (32 for a ResNet): on images smaller than
    that its last stages see a single pixel of padding-dominated values, and it trains badly."""
    info = getattr(network, "feature_info", None)
    if not isinstance(info, list) or not info or "reduction" not in info[-1]:
        return
    stride, side = info[-1]["reduction"], min(input_shape[1:])
    if side < stride:
        log.warning("%s shrinks images %d times, and these are %dx%d: its last stages see less "
                    "than a pixel; use --image-size %d or more (ImageNet networks were trained "
                    "at 224)", model_name, stride, input_shape[2], input_shape[1], stride * 2)
