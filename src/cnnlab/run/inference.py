"""Batched forward passes shared by training, evaluation and prediction."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from ..base.errors import CnnlabError
from ..data.images import to_float
from ..data.splits import Split
from ..models.modes import eval_mode

# Batches of about a million input pixels: larger ones of large images spill the CPU's caches
# (EfficientNet-Lite0 at 224 px in channels-last on 2 cores: 42 images/s in batches of 16, 32 in
# batches of 72), and 256 small images are already enough to keep the cores busy.
PIXELS_PER_BATCH, MAX_BATCH = 1 << 20, 256


def inference_batch(split: Split) -> int:
    """The batch size of forward passes over the split's images."""
    shape = split.images.shape[1:] if hasattr(split, "images") else getattr(split, "shape", None)
    if not shape:
        return MAX_BATCH
    return max(1, min(MAX_BATCH, PIXELS_PER_BATCH // (shape[-1] * shape[-2])))


@torch.no_grad()
def predict_logits(model: nn.Module, split: Split, device: torch.device,
                   batch_size: int | None = None,
                   channels_last: bool = False, order: torch.Tensor | None = None,
                   advance: Callable[[int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, K) and labels (N,) for a whole split (or the images `order` picks), in eval mode
    (the mode is restored). A Classifier with flip_tta gives its log-probabilities, which serve
    as logits: their softmax is the averaged probabilities. `advance(n)` is told of each batch.
    The batch size, where none is given, follows the images' size (inference_batch)."""
    logits, labels = [], []
    batch_size = batch_size or inference_batch(split)
    with eval_mode(model):
        for images, targets in split.batches(batch_size, order):
            inputs = to_float(images.to(device, non_blocking=True))
            if channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            outputs = model.predict_log_proba(inputs) if getattr(model, "predicts_log_proba", False) \
                else model(inputs)
            logits.append(outputs.float().cpu())
            labels.append(targets)
            if advance is not None:
                advance(len(targets))
    return torch.cat(logits), torch.cat(labels)


def loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    loss = nn.functional.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    return loss, accuracy


def output_layer(model: nn.Module) -> nn.Linear:
    """The output layer of a Classifier (see Classifier.output_layer)."""
    if not isinstance(getattr(model, "output_layer", None), nn.Linear):
        raise CnnlabError("the model has no dense output layer to take features from")
    return model.output_layer


def first_inputs(split: Split, limit: int, batch_size: int, device: torch.device,
                 channels_last: bool = False, advance: Callable[[int], None] | None = None
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The first `limit` images of a split as the model's float inputs (B, C, H, W) on `device`,
    with their labels (B,), batch by batch; `advance(n)` is told of each batch."""
    seen = 0
    for images, targets in split.batches(batch_size):
        inputs = to_float(images[: limit - seen].to(device))
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        targets = targets[: limit - seen]
        seen += len(targets)
        yield inputs, targets
        if advance is not None:
            advance(len(targets))
        if seen >= limit:
            return


@torch.no_grad()
def penultimate_features(model: nn.Module, split: Split, limit: int, batch_size: int = 64,
                         device: torch.device | None = None, channels_last: bool = False,
                         advance: Callable[[int], None] | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """What the output layer sees: its input vectors (N, F), with the labels (N,), in eval mode."""
    head = output_layer(model)
    features, labels = [], []
    device = device or next(model.parameters()).device

    def record(_module, inputs, _output):
        features.append(inputs[0].detach().float().cpu())

    handle = head.register_forward_hook(record)
    try:
        with eval_mode(model):
            for inputs, targets in first_inputs(split, limit, batch_size, device, channels_last,
                                                advance):
                model(inputs)
                labels.append(targets)
    finally:
        handle.remove()
    return torch.cat(features).numpy(), torch.cat(labels).numpy()
