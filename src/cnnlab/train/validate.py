"""Validation after each epoch: loss and accuracy of the kept model, and its robust accuracy where
training is adversarial. With several ranks each scores every world_size-th image and the sums are
all-reduced."""

from __future__ import annotations

import torch
from torch import nn

from ..attack import PGDAttack, robust_correct, seeded
from ..base.distributed import summed, sync_buffers
from ..data.images import to_float
from ..data.splits import Split
from ..run.inference import predict_logits
from .trainer import Trainer

# Robust validation: PGD at the training eps on the first images of the validation split, with the
# same random start every epoch, so the column is comparable across epochs and runs.
VAL_ROBUST_IMAGES, VAL_ROBUST_STEPS, VAL_ROBUST_SEED = 500, 10, 0


def validate(trainer: Trainer, val: Split) -> tuple[float, float]:
    """Validation loss and accuracy of the kept model (the average where there is one)."""
    ranks = trainer.ranks
    sync_buffers(trainer.model, ranks)
    if trainer.ema is not None:  # its batch-norm statistics average each rank's own
        sync_buffers(trainer.kept, ranks)
    order = torch.arange(ranks.rank, len(val), ranks.world_size) if ranks.enabled else None
    logits, labels = predict_logits(trainer.kept, val, trainer.device,
                                    channels_last=trainer.config.channels_last, order=order)
    loss_total, correct_total, count = summed(
        [nn.functional.cross_entropy(logits.double(), labels, reduction="sum"),
         (logits.argmax(1) == labels).sum(), len(labels)], ranks, trainer.device)
    return loss_total / count, correct_total / count


def validate_robust(trainer: Trainer, val: Split) -> float:
    """PGD robust accuracy at adv_eps on a fixed validation subset (the global RNG is left as is)."""
    images, labels = next(iter(val.batches(VAL_ROBUST_IMAGES)))
    images, labels = to_float(images.to(trainer.device)), labels.to(trainer.device)
    attack = PGDAttack(trainer.kept, trainer.config.adv_eps, steps=VAL_ROBUST_STEPS)
    with seeded(VAL_ROBUST_SEED, trainer.device):
        _, robust, _ = robust_correct(trainer.kept, attack, images, labels)
    return robust.float().mean().item()
