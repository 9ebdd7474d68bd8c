"""Batched forward passes shared by training, evaluation and prediction."""

from __future__ import annotations

import torch
from torch import nn

from .data.augment import to_float
from .data.splits import Split


@torch.no_grad()
def predict_logits(model: nn.Module, split: Split, device: torch.device, batch_size: int = 256,
                   channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, K) and labels (N,) for a whole split, in eval mode (the mode is restored)."""
    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        for images, targets in split.batches(batch_size):
            inputs = to_float(images.to(device, non_blocking=True))
            if channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            logits.append(model(inputs).float().cpu())
            labels.append(targets)
    finally:
        model.train(was_training)
    return torch.cat(logits), torch.cat(labels)


def loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    loss = nn.functional.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    return loss, accuracy
