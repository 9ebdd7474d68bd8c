"""An exported model run by ONNX Runtime, behind the interface every stage uses for a Classifier:
pixels in [0, 1] in, logits out, `predict_proba` for inference. So predict and evaluate take an
export folder (or its .onnx file) with the same preprocessing code as the PyTorch path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..base.errors import CnnlabError

CHUNK_BYTES = 4 << 20  # the input of one ONNX Runtime call at most (see OnnxClassifier.forward)


def check_external_data(path: Path) -> None:
    """Refuse an ONNX file whose tensors are stored in files outside its own folder: loading one
    would read whatever path the file names."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError, ValueError or OSError for a bad file
        raise CnnlabError(f"{path} is not a readable ONNX model: {error}") from None
    folder = path.resolve().parent
    for tensor in model.graph.initializer:
        if not uses_external_data(tensor):
            continue
        location = (folder / ExternalDataInfo(tensor).location).resolve()
        if not location.is_relative_to(folder):
            raise CnnlabError(f"{path}: tensor {tensor.name!r} reads its data from "
                              f"{ExternalDataInfo(tensor).location!r}, outside the model's folder; "
                              f"refusing to load it")


def _validates_external_data(version: str) -> bool:
    """ONNX Runtime 1.32 refuses external data outside the model's folder by itself (tested in
    tests/test_export.py); older versions need cnnlab's check."""
    try:
        return tuple(int(part) for part in version.split(".")[:2]) >= (1, 32)
    except ValueError:
        return False


def open_session(path: Path, threads: int | None = None, own: bool = False):
    """An ONNX Runtime session on the CPU for a checked model file; `own`: a graph cnnlab wrote
    and checks by its SHA-256 (cnnlab.run.engine): where ONNX Runtime checks external data
    itself, cnnlab's check (0.8 s to load the onnx package) is skipped."""
    import onnxruntime as ort

    if not (own and _validates_external_data(ort.__version__)):
        check_external_data(path)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: no warnings about unused initializers
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ORT raises its own Fail / InvalidGraph / NoSuchFile classes
        raise CnnlabError(f"ONNX Runtime cannot load {path}: {str(error).splitlines()[0]}") from None


class OnnxClassifier(nn.Module):
    """An ONNX model file as a (parameter-free) module: forward gives its output as a tensor.

    An export with flip test-time augmentation outputs log-probabilities; they serve as logits
    (their softmax is the averaged probabilities), as Classifier.predict_log_proba's do. An export
    that outputs logits divides them by its model card's `temperature` for probabilities, as the
    Classifier does, so its logits stay the raw ones (the unknown detector's energy reads them).
    """

    flip_tta = False  # already inside the exported graph

    def __init__(self, path: Path, threads: int | None = None, temperature: float = 1.0,
                 own: bool = False) -> None:
        super().__init__()
        self.path, self.temperature = path, temperature
        self.session = open_session(path, threads, own)
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = np.ascontiguousarray(x.detach().float().cpu().numpy())  # (B, C, H, W) in [0, 1]
        # ONNX Runtime's CPU kernels run faster on batches whose activations stay in the cache:
        # EfficientNet-Lite0 at 224 px gives 108 images/s in one batch of 240, 150-180 in
        # batches of 4 to 16 (2 cores); a network on small images takes hundreds at once.
        step = max(1, CHUNK_BYTES // max(1, pixels[:1].nbytes))
        outputs = [self.session.run(None, {self.input_name: pixels[start:start + step]})[0]
                   for start in range(0, len(pixels), step)]
        return torch.from_numpy(np.concatenate(outputs) if len(outputs) != 1 else outputs[0])

    @property
    def predicts_log_proba(self) -> bool:
        return self.temperature != 1.0

    def predict_log_proba(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self(x) / self.temperature, dim=1)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict_log_proba(x).exp()
