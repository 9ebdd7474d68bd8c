"""`cnnlab export`'s settings."""

from __future__ import annotations

from dataclasses import dataclass

from ..base.settings import option
from ..config.common import EVAL_BATCH, QUIET_HELP


@dataclass(frozen=True)
class ExportSettings:
    int8: bool = option(False, "also write model.int8.onnx, statically quantized by ONNX Runtime "
                               "on training images")
    calibration: int = option(256, "int8: training images that calibrate the activation ranges", minimum=1)
    limit: int | None = option(None, "parity: measure on the first N test images (default: all)", minimum=1)
    check: bool = option(True, "fail (exit code 1) when parity misses its targets")
    opset: int | None = option(None, "ONNX opset (default: the exporter's)", minimum=7)
    out: str | None = option(None, "export folder (default RUN/export)", metavar="DIR")
    batch_size: int = option(EVAL_BATCH, "images per forward pass when measuring parity", minimum=1)
    quiet: bool = option(False, QUIET_HELP)
