"""`cnnlab export RUN`: RUN/export/ with model.onnx (fp32), model.int8.onnx (with int8) and
export.json (the model card, the files, and the parity measured on the run's test split)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..base.errors import CnnlabError
from ..base.fileio import atomic_write_text, check_replaceable, replacing, sha256_of
from ..base.progress import tracked
from ..base.settings import resolve
from ..data.images import to_float
from ..data.splits import DatasetSplits, Split
from ..models import Classifier
from ..models.onnx import OnnxClassifier
from ..models.onnx_graph import INPUT_NAME, OUTPUT_NAME, to_onnx
from ..run.contract import EXPORT_MANIFEST, ExportManifest, ModelCard, versions
from ..run.data import run_data_config, run_dataset
from ..run.folder import export_of, load_model
from ..run.results import ExportParity, Int8Parity
from .parity import compare_fp32, compare_int8, outputs
from .quantize import WORK_PREFIX, quantize_int8
from .settings import ExportSettings

FP32_FILE, INT8_FILE = "model.onnx", "model.int8.onnx"
HELD_OUT_FOR_INT8 = 512  # images that choose between the int8 candidates
# What an export writes (and a killed one leaves): a re-export drops these of the old folder, and
# keeps anything else in it (another verb's results).
EXPORT_OWN = (FP32_FILE, INT8_FILE, EXPORT_MANIFEST, f"{WORK_PREFIX}*", ".*.tmp")


@dataclass
class ExportResult:
    folder: Path
    manifest: ExportManifest

    @property
    def passed(self) -> bool:
        return self.manifest.parity.passed


def _say(settings: ExportSettings) -> Any:
    return (lambda text: None) if settings.quiet else (lambda text: print(text, flush=True))


def _check_graph(path: Path) -> int:
    """onnx.checker's full check (with shape inference); returns the graph's opset."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as error:
        raise CnnlabError(f"{path} fails onnx.checker: {str(error).splitlines()[0]}") from None
    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _pixels(split: Split, order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float pixels (N, C, H, W) in [0, 1] and labels of the images `order` picks."""
    pairs = list(split.batches(256, order))
    return torch.cat([to_float(images) for images, _ in pairs]), torch.cat([y for _, y in pairs])


def _int8(folder: Path, dataset: DatasetSplits, settings: ExportSettings, test: Split,
          fp32_outputs: torch.Tensor, labels: torch.Tensor) -> Int8Parity:
    """Calibrate on training images in a fixed random order (every class appears); choose between
    the candidates on validation images, or on training images that did not calibrate."""
    held_out = 0 if dataset.val is not None else HELD_OUT_FOR_INT8
    order = torch.randperm(len(dataset.train), generator=torch.Generator().manual_seed(0))
    images, train_labels = _pixels(dataset.train, order[:settings.calibration + held_out])
    calibration = np.ascontiguousarray(images[:settings.calibration].numpy())
    if dataset.val is not None:
        chooser = _pixels(dataset.val, torch.arange(min(HELD_OUT_FOR_INT8, len(dataset.val))))
    else:
        chooser = images[settings.calibration:], train_labels[settings.calibration:]
    choice = quantize_int8(folder / FP32_FILE, folder / INT8_FILE, calibration, *chooser,
                           INPUT_NAME)
    int8_outputs, _ = outputs(OnnxClassifier(folder / INT8_FILE), test, settings.limit,
                              settings.batch_size)
    return compare_int8(fp32_outputs, int8_outputs, labels, reduce_range=choice.reduce_range,
                        calibration_images=len(calibration), candidates=choice.accuracies)


def _manifest(card: ModelCard, run: Path, folder: Path, files: dict, opset: int, exporter: str,
              parity: ExportParity) -> ExportManifest:
    """export.json, with the SHA-256 of each file it lists (checked wherever the export loads)."""
    data = run_data_config(run, card, None)
    sha256 = {name: sha256_of(folder / name) for name in files.values()}
    return ExportManifest(card=card, files=files, sha256=sha256, input_name=INPUT_NAME,
                          output_name=OUTPUT_NAME,
                          output="log_probabilities" if card.flip_tta else "logits", opset=opset,
                          exporter=exporter, data=data.__dict__.copy(), parity=parity,
                          versions=_versions())


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {**versions(), "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def export_run(run: str | Path, settings: ExportSettings | None = None,
               **options: Any) -> ExportResult:
    """Export a run's best model to ONNX and measure parity on its test split. The export folder
    is replaced as a whole, in one step, when the export is done.

    Args:
        run: the run folder.
        settings: ExportSettings (default: its defaults); `options` override its fields by name,
            e.g. int8=True, limit=500.
    """
    settings, run = resolve(ExportSettings, settings, options), Path(run)
    if export_of(run) is not None:
        raise CnnlabError(f"{run} is already an export; export the run folder it came from")
    folder = Path(settings.out) if settings.out else run / "export"
    check_replaceable(folder, EXPORT_MANIFEST, chosen=bool(settings.out))
    model, card = load_model(run, "cpu")
    with replacing(folder, EXPORT_OWN) as work:
        manifest = _export_into(work, run, model, card, settings)
    return ExportResult(folder, manifest)


def _export_into(folder: Path, run: Path, model: Classifier, card: ModelCard,
                 settings: ExportSettings) -> ExportManifest:
    """Write the ONNX files and export.json into the empty `folder`; returns the manifest."""
    say = _say(settings)
    exporter = to_onnx(model, card.input.shape, folder / FP32_FILE, settings.opset, say)
    opset = _check_graph(folder / FP32_FILE)
    dataset = run_dataset(run, card)
    test = dataset.test if dataset.test is not None else dataset.val
    if test is None:
        raise CnnlabError(f"{dataset.name} has no test or val split to measure parity on")
    with tracked("parity", 2 * min(settings.limit or len(test), len(test)),
                 quiet=settings.quiet) as advance:
        eager, labels = outputs(model, test, settings.limit, settings.batch_size, advance)
        graph = OnnxClassifier(folder / FP32_FILE,
                               temperature=1.0 if card.flip_tta else card.temperature)
        onnx_fp32, _ = outputs(graph, test, settings.limit,
                               settings.batch_size, advance)
    parity = ExportParity(fp32=compare_fp32(eager, onnx_fp32, labels))
    files = {"fp32": FP32_FILE}
    if settings.int8:
        say(f"quantizing to int8 on {settings.calibration} training images")
        parity = ExportParity(parity.fp32, _int8(folder, dataset, settings, test, onnx_fp32, labels))
        files["int8"] = INT8_FILE
    manifest = _manifest(card, run, folder, files, opset, exporter, parity)
    atomic_write_text(folder / EXPORT_MANIFEST, manifest.to_json() + "\n")
    return manifest
