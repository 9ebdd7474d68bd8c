"""What a candidate costs and scores, measured here on its ONNX graph: one-image latency (median
and 95th percentile) on one thread and on all, images per second in batches, the file's size, its
parameters and FLOPs, and its accuracy on the validation and test splits (ONNX Runtime's outputs,
so the numbers are those of the file that ships)."""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.images import to_float
from ..data.splits import Split
from ..models import Classifier
from ..models.onnx import OnnxClassifier, open_session
from ..models.onnx_graph import to_onnx
from ..models.prune import parameter_count
from ..run.engine import flops_per_image

BATCH = 32  # images per call for the throughput
MIN_CALLS, MAX_CALLS, WARMUP = 30, 20000, 5


@dataclass(frozen=True)
class Speed:
    one_thread_ms: float
    one_thread_p95_ms: float
    all_threads_ms: float
    all_threads_p95_ms: float
    images_per_second: float


def _calls(session, inputs: np.ndarray, seconds: float) -> list[float]:
    """Seconds per call, after a warm-up: at least MIN_CALLS calls and `seconds` in all."""
    name = session.get_inputs()[0].name
    for _ in range(WARMUP):
        session.run(None, {name: inputs})
    times: list[float] = []
    while len(times) < MAX_CALLS and (len(times) < MIN_CALLS or sum(times) < seconds):
        started = time.perf_counter()
        session.run(None, {name: inputs})
        times.append(time.perf_counter() - started)
    return times


def _milliseconds(times: list[float]) -> tuple[float, float]:
    """(median, 95th percentile) in ms."""
    return 1000 * statistics.median(times), 1000 * float(np.percentile(times, 95))


def time_graph(path: Path, input_shape: tuple[int, int, int], threads: int,
               seconds: float) -> Speed:
    """The graph's speed on this machine's CPU, one thread and `threads` threads, each figure
    timed for `seconds`."""
    one = np.random.default_rng(0).random((1, *input_shape), dtype=np.float32)
    batch = np.random.default_rng(1).random((BATCH, *input_shape), dtype=np.float32)
    single = _milliseconds(_calls(open_session(path, threads=1, own=True), one, seconds))
    session = open_session(path, threads=threads, own=True)
    parallel = _milliseconds(_calls(session, one, seconds))
    per_batch = statistics.median(_calls(session, batch, seconds))
    return Speed(*single, *parallel, BATCH / per_batch)


def graph_accuracy(path: Path, split: Split | None) -> float | None:
    """Top-1 accuracy of the graph's outputs on a split (None without one)."""
    if split is None:
        return None
    model, correct = OnnxClassifier(path, own=True), 0
    for images, labels in split.batches(256):
        correct += int((model(to_float(images)).argmax(1) == labels).sum())
    return correct / len(split)


@dataclass(frozen=True)
class Measured:
    speed: Speed
    val_accuracy: float | None
    test_accuracy: float | None
    file_mb: float
    parameters: int
    flops: float


def measure(model: Classifier, input_shape: tuple[int, int, int], val: Split | None,
            test: Split | None, threads: int, seconds: float,
            graph: Path | None = None) -> Measured:
    """Export `model` (as its flip_tta says) to a scratch graph, or take `graph`, and measure it."""
    with tempfile.TemporaryDirectory(prefix="cnnlab-compress-") as scratch:
        path = graph or Path(scratch) / "model.onnx"
        if graph is None:
            to_onnx(model, input_shape, path, say=lambda text: None)
        passes = 2 if model.flip_tta else 1
        with torch.no_grad():
            flops = passes * flops_per_image(model, input_shape)
        return Measured(time_graph(path, input_shape, threads, seconds), graph_accuracy(path, val),
                        graph_accuracy(path, test), path.stat().st_size / 1e6,
                        parameter_count(model), flops)
