"""The report's cost section: parameters, FLOPs, latency measured now, sizes on disk."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from ..run.contract import EXPORT_MANIFEST, ExportManifest, ModelCard
from ..run.results import Fp32Parity, Int8Parity
from .sections import Section, Table, figure

LATENCY_BATCH = 64


def _megabytes(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.2f} MB"


@torch.no_grad()
def latency(model: torch.nn.Module, shape: tuple[int, ...], repeats: int = 5) -> tuple[float, float]:
    """(median ms for one image, images per second in batches of LATENCY_BATCH) on this machine,
    after a warm-up call of each."""
    single, batch = torch.rand(1, *shape), torch.rand(LATENCY_BATCH, *shape)
    times = {}
    for name, inputs in (("single", single), ("batch", batch)):
        model(inputs)  # warm-up: first calls pick kernels and allocate
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            model(inputs)
            samples.append(time.perf_counter() - started)
        times[name] = statistics.median(samples)
    return 1000 * times["single"], LATENCY_BATCH / times["batch"]


def cost(run: Path, card: ModelCard) -> Section:
    from ..models.summary import human
    from ..run.folder import load_model, network_summary

    section = Section("cost", "What it costs")
    model, _ = load_model(run)
    summary = network_summary(run, card, model=model)
    single_ms, per_second = latency(model, card.input.shape)
    section.facts = [("parameters", f"{summary.params:,}"),
                     ("FLOPs per image", f"{human(summary.flops)} ({human(summary.flops / 2)} "
                                         f"multiply-adds)"),
                     # the batch size beside each: one image at a time pays each call's
                     # overhead alone, so its rate is far below the batched throughput
                     ("latency, one image", f"{single_ms:.2f} ms (batch of 1: "
                                            f"{1000 / single_ms:,.0f} images/s; PyTorch, "
                                            f"{torch.get_num_threads()} threads, measured now)"),
                     ("throughput", f"{per_second:,.0f} images/s (batches of {LATENCY_BATCH})"),
                     ("model.safetensors", _megabytes(run / "model.safetensors"))]
    section.headline = [("parameters", f"{summary.params:,}"), ("one image", f"{single_ms:.2f} ms")]
    if (run / "export" / EXPORT_MANIFEST).is_file():
        export = ExportManifest.read(run / "export" / EXPORT_MANIFEST)
        section.tables.append(Table("ONNX export", ["file", "size", "parity"], [
            [name, _megabytes(run / "export" / name), _parity(export.parity.of(precision))]
            for precision, name in export.files.items() if (run / "export" / name).is_file()]))
    else:
        section.missing = f"cnnlab export {run} --int8 (for the ONNX sizes and parity)"
    _compression(run, section)
    return section


def _compression(run: Path, section: Section) -> None:
    """A teacher's compression (RUN/compress/) or a compressed run's own: every candidate beside
    the teacher, measured on one machine, and the figure."""
    from ..compress import COMPRESS_FIGURE, compression_table, read_compression

    folder = run / "compress" if (run / "compress" / "compress.json").is_file() else run
    if not (folder / "compress.json").is_file():
        return
    record = read_compression(folder)
    columns, rows = compression_table(record)
    section.tables.append(Table(f"compression of {Path(record.teacher).name} (cnnlab compress; "
                                f"ONNX Runtime, measured then)", columns, rows))
    section.notes.append(record.reason)
    if (folder / COMPRESS_FIGURE).is_file():
        section.figures.append(figure(folder / COMPRESS_FIGURE, "accuracy against one-image "
                                      "latency: the teacher, the candidates, the Pareto front"))


def _parity(measured: Fp32Parity | Int8Parity | None) -> str:
    """What export measured for one file: agreement with PyTorch and accuracy."""
    if measured is None:
        return "-"
    fp32 = isinstance(measured, Fp32Parity)
    accuracy = measured.onnx_accuracy if fp32 else measured.int8_accuracy
    parts = [f"top-1 agreement {measured.top1_agreement:.2%}", f"accuracy {accuracy:.2%}",
             f"max logit difference {measured.max_abs_logit_difference:.1e}" if fp32 else "",
             "passed" if measured.passed else "missed its target"]
    return ", ".join(part for part in parts if part)
