"""int8 through ONNX Runtime's static quantization: activation ranges calibrated on training images,
QDQ format, per-channel weights.

CPUs without AVX-512 VNNI (this project's CI machine among them) can overflow in the u8 x s8
multiply-adds; ONNX Runtime's answer is `reduce_range` (7-bit weights). Both are tried and the more
accurate on held-out images is kept.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..models.onnx import OnnxClassifier
from .parity import accuracy

CALIBRATION_BATCH = 32
WORK_PREFIX = ".int8-"  # the candidates' folder, inside the export folder


@dataclass
class Int8Choice:
    reduce_range: bool
    accuracy: float  # on the held-out images
    accuracies: dict[str, float]  # every candidate's


def _reader(images: np.ndarray, input_name: str):
    from onnxruntime.quantization import CalibrationDataReader

    class Calibration(CalibrationDataReader):
        """Batches of float pixels (B, C, H, W) in [0, 1], as the graph takes them."""

        def __init__(self) -> None:
            self.batches = iter([images[i:i + CALIBRATION_BATCH]
                                 for i in range(0, len(images), CALIBRATION_BATCH)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    return Calibration()


def _accuracy(path: Path, images: torch.Tensor, labels: torch.Tensor) -> float:
    model = OnnxClassifier(path)
    return accuracy(torch.cat([model(images[i:i + 256]) for i in range(0, len(images), 256)]),
                    labels)


class _PerTensorNotice(logging.Filter):
    """ONNX Runtime warns, through the root logger, for each rank-1 weight (a batch norm's scale
    after a pooling layer) that it quantizes per tensor instead of per channel: expected, and
    nothing a user can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is out-of-range for weight" not in record.getMessage()


@contextmanager
def _quiet_per_tensor_notices():
    notice, root = _PerTensorNotice(), logging.getLogger()
    handlers = [root, *root.handlers]
    for handler in handlers:
        handler.addFilter(notice)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(notice)


def quantize_int8(fp32: Path, int8: Path, calibration: np.ndarray, held_out: torch.Tensor,
                  held_out_labels: torch.Tensor, input_name: str) -> Int8Choice:
    """Write `int8` from `fp32`, calibrated on `calibration` (N, C, H, W) float32 in [0, 1]."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(dir=int8.parent, prefix=WORK_PREFIX) as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        accuracies, paths = {}, {}
        for reduce_range in (False, True):
            paths[reduce_range] = Path(work) / f"int8-{reduce_range}.onnx"
            with _quiet_per_tensor_notices():
                quantize_static(str(prepared), str(paths[reduce_range]),
                                _reader(calibration, input_name), quant_format=QuantFormat.QDQ,
                                per_channel=True, reduce_range=reduce_range,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
            accuracies[reduce_range] = _accuracy(paths[reduce_range], held_out, held_out_labels)
        best = max(accuracies, key=lambda r: (accuracies[r], not r))  # ties: full range
        shutil.move(paths[best], int8)
    return Int8Choice(best, accuracies[best],
                      {f"reduce_range={key}": value for key, value in accuracies.items()})
