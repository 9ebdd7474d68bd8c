"""`cnnlab export` on the terminal: parity against PyTorch, the files and their sizes."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ..base.show import console, print_table

if TYPE_CHECKING:
    from .run import ExportResult
    from .settings import ExportSettings


def show_export(result: ExportResult, settings: ExportSettings) -> int:
    """The parity table; 1 when parity misses its targets (unless --no-check)."""
    if not settings.quiet:
        _print_parity(result)
    if not result.passed and settings.check:
        print("error: parity misses its targets (see above); --no-check exports anyway",
              file=sys.stderr)
        return 1
    return 0


def _print_parity(result: ExportResult) -> None:
    fp32, int8 = result.manifest.parity.fp32, result.manifest.parity.int8
    rows = [["images", f"{fp32.images:,}", ""],
            ["fp32 ONNX vs PyTorch: max |logit difference|",
             f"{fp32.max_abs_logit_difference:.2e}", "<= 1e-4"],
            ["fp32 ONNX vs PyTorch: top-1 agreement", f"{fp32.top1_agreement:.2%}", "100%"],
            ["accuracy: PyTorch / fp32 ONNX",
             f"{fp32.eager_accuracy:.2%} / {fp32.onnx_accuracy:.2%}", ""]]
    if int8 is not None:
        rows += [["accuracy: int8 ONNX", f"{int8.int8_accuracy:.2%} "
                  f"({int8.accuracy_difference * 100:+.2f} points)", ">= -1 point"],
                 ["int8 vs fp32: top-1 agreement", f"{int8.top1_agreement:.2%}", ""],
                 ["int8 reduce_range", str(int8.reduce_range), ""]]
    print_table(f"parity ({result.manifest.exporter} exporter, opset {result.manifest.opset})",
                ["check", "measured", "target"], rows)
    sizes = ", ".join(f"{name} ({(result.folder / name).stat().st_size / 1e6:.2f} MB)"
                      for name in result.manifest.files.values())
    console.print(f"written to {result.folder}/: {sizes}, export.json")
