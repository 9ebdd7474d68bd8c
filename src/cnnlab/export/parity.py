"""Parity, measured: the ONNX graph against eager PyTorch, int8 against fp32, on the same images."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..data.splits import Split
from ..run.inference import predict_logits
from ..run.results import Fp32Parity, Int8Parity

MAX_LOGIT_DIFFERENCE = 1e-4  # fp32 ONNX Runtime against eager PyTorch
MIN_AGREEMENT = 1.0  # top-1 agreement of the two
MAX_INT8_ACCURACY_DROP = 0.01  # int8 against fp32, test accuracy


def outputs(model: nn.Module, split: Split, limit: int | None, batch_size: int,
            advance: Callable[[int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's outputs (N, K) and the labels for the first `limit` images of the split."""
    count = len(split) if limit is None else min(limit, len(split))
    return predict_logits(model, split, torch.device("cpu"), batch_size,
                          order=torch.arange(count), advance=advance)


def _unexplained_disagreements(eager: torch.Tensor, onnx: torch.Tensor) -> int:
    """Images whose top-1 class differs although eager PyTorch's own logits of the two classes are
    further apart than the numerical noise (a near-tie may break either way; on an undertrained
    model whose logits are all close, it does)."""
    ours, theirs = eager.argmax(1), onnx.argmax(1)
    rows = torch.arange(len(eager))
    gap = eager[rows, ours] - eager[rows, theirs]
    return int(((ours != theirs) & (gap > 2 * MAX_LOGIT_DIFFERENCE)).sum())


def compare_fp32(eager: torch.Tensor, onnx: torch.Tensor, labels: torch.Tensor) -> Fp32Parity:
    difference = (eager - onnx).abs().max().item()
    agreement = (eager.argmax(1) == onnx.argmax(1)).float().mean().item()
    unexplained = _unexplained_disagreements(eager, onnx)
    return Fp32Parity(
        images=len(labels), max_abs_logit_difference=difference, top1_agreement=agreement,
        disagreements_beyond_near_ties=unexplained, eager_accuracy=accuracy(eager, labels),
        onnx_accuracy=accuracy(onnx, labels),
        passed=difference <= MAX_LOGIT_DIFFERENCE and (agreement >= MIN_AGREEMENT or unexplained == 0))


def compare_int8(fp32: torch.Tensor, int8: torch.Tensor, labels: torch.Tensor,
                 **calibration: Any) -> Int8Parity:
    """int8 against fp32 on the same images; `calibration` says how the int8 model was made."""
    fp32_accuracy, int8_accuracy = accuracy(fp32, labels), accuracy(int8, labels)
    return Int8Parity(
        images=len(labels), fp32_accuracy=fp32_accuracy, int8_accuracy=int8_accuracy,
        accuracy_difference=int8_accuracy - fp32_accuracy,
        top1_agreement=(fp32.argmax(1) == int8.argmax(1)).float().mean().item(),
        passed=fp32_accuracy - int8_accuracy <= MAX_INT8_ACCURACY_DROP, **calibration)


def accuracy(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of outputs (N, K) against labels (N,)."""
    return (outputs.argmax(1) == labels).float().mean().item()
