"""A Classifier to an ONNX graph that takes pixels in [0, 1] (the normalization is inside)."""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..base.fileio import atomic_write
from .classifier import Classifier

INPUT_NAME, OUTPUT_NAME = "pixels", "logits"
FALLBACK_OPSET = 17  # the TorchScript-based exporter's well-trodden opset


class ExportedGraph(nn.Module):
    """What the exported graph computes: the logits, or with flip test-time augmentation the
    log-probabilities of the (temperature-scaled) softmax averaged over the image and its mirror
    image. Logits stay raw: the temperature travels in export.json's model card."""

    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) in [0, 1]
        if self.model.flip_tta:
            return self.model.predict_log_proba(pixels)
        return self.model(pixels)  # (B, num_classes)


def _dynamo_export(graph: nn.Module, example: torch.Tensor, path: Path, opset: int | None) -> None:
    batch = torch.export.Dim("batch", min=1, max=65536)
    # The exporter prints its steps to stdout and warns about internals; the user sees one line.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (example,), str(path), dynamo=True, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_shapes={"pixels": {0: batch}},
                          opset_version=opset, external_data=False, verbose=False)


def _torchscript_export(graph: nn.Module, example: torch.Tensor, path: Path,
                        opset: int | None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (example,), str(path), dynamo=False, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], opset_version=opset or FALLBACK_OPSET,
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})


def to_onnx(model: Classifier, input_shape: tuple[int, int, int], path: Path,
            opset: int | None = None, say: Callable[[str], None] = print) -> str:
    """Write `model` (eval mode, on the CPU) to `path` atomically; returns the exporter used:
    "dynamo" (torch.export, the recommended one), or "torchscript" where dynamo fails."""
    return module_to_onnx(ExportedGraph(model.cpu().eval()), input_shape, path, opset, say)


def module_to_onnx(graph: nn.Module, input_shape: tuple[int, int, int], path: Path,
                   opset: int | None = None, say: Callable[[str], None] = print) -> str:
    """Write any module of pixels (B, C, H, W) to one output (B, ...) as to_onnx does."""
    graph = graph.eval()
    example = torch.rand(2, *input_shape)
    try:
        atomic_write(path, lambda tmp: _dynamo_export(graph, example, tmp, opset))
        return "dynamo"
    except Exception as error:  # torch.export raises many kinds for unsupported code
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        say(f"the dynamo exporter failed ({reason}); using the TorchScript-based exporter")
    atomic_write(path, lambda tmp: _torchscript_export(graph, example, tmp, opset))
    return "torchscript"


class FeatureGraph(nn.Module):
    """What a Classifier's output layer sees: its input vectors (B, F), for a graph that
    extracts features (the linear probe's). A copy of the model with that layer as identity."""

    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).cpu().eval()
        head = self.model.output_layer
        for parent in self.model.modules():
            for name, child in parent.named_children():
                if child is head:
                    setattr(parent, name, nn.Identity())
        self.model.flip_tta = False

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) in [0, 1]
        return self.model(pixels)  # (B, F)
