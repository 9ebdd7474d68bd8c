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


def fit_batch_to_data(config: TrainConfig, train_images: int) -> TrainConfig:
    """The config with a batch small enough for MIN_STEPS_PER_EPOCH steps (down to
    SMALLEST_AUTO_BATCH), saying so when it changes; a warning when an epoch still has fewer."""
    largest = max(SMALLEST_AUTO_BATCH, train_images // MIN_STEPS_PER_EPOCH)
    if config.batch_size > largest:
        log.warning("batch size %d would make %d step(s) per epoch on %d training images: using "
                    "%d instead (set --batch-size to choose)", config.batch_size,
                    math.ceil(train_images / config.batch_size), train_images, largest)
        config = dataclasses.replace(config, batch_size=largest)
    steps = math.ceil(train_images / config.batch_size)
    if steps < MIN_STEPS_PER_EPOCH:
        log.warning("only %d optimizer step(s) per epoch (%d in all): few steps train poorly; more "
                    "images, more --epochs or a smaller --batch-size help", steps,
                    steps * config.epochs)
    return config


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


def warn_on_imbalance(names: list[str], counts: list[int], class_weights: bool) -> None:
    """A warning when the largest class has IMBALANCE_RATIO times the images of the smallest, or a
    class has none; pointing to --class-weights unless it is on."""
    smallest, largest = min(counts), max(counts)
    if smallest == 0:
        empty = [name for name, count in zip(names, counts, strict=True) if count == 0]
        log.warning("no training images for class(es) %s: the model cannot learn them",
                    ", ".join(empty[:5]) + (" ..." if len(empty) > 5 else ""))
    elif largest >= IMBALANCE_RATIO * smallest:
        few = names[counts.index(smallest)]
        many = names[counts.index(largest)]
        advice = "" if class_weights else "; --class-weights weighs the loss to even it out"
        log.warning("the classes are imbalanced: %s has %d training images, %s %d (%.0fx)%s", few,
                    smallest, many, largest, largest / smallest, advice)
