"""The fast engine: a network run by ONNX Runtime wherever a verb only runs it forward (predict,
evaluate, serve, the linear probe's features). Gradients (training, explanations, attacks) stay
in PyTorch.

On 2 CPU cores ONNX Runtime runs EfficientNet-Lite0 5.6 times as fast as eager PyTorch with logits
equal to 4e-6 (BENCHMARKS.md, "Export"). A graph is exported once and kept beside a record of
what it was made from and of the parity measured when it was made: a run's in RUN/engine/ (keyed
by the weights' SHA-256, which model.json binds to the weights, and by the flip test-time
augmentation and temperature inside the graph), a pretrained backbone's features in the cache
folder (keyed by the SHA-256 of its tensors). A graph made from anything else (a resumed run's
new weights, a new calibration) or damaged on disk is remade, never used; one whose outputs
differ from eager PyTorch's by more than 1e-4 is kept out, said in one line, and PyTorch runs
instead. A passing `cnnlab export` of the same weights is used as it is.

A record can be rewritten together with its graph, so neither vouches for the other: a graph
made before is used once it has agreed with the weights it claims to come from, on the parity
check's pixels, after each time its file was written (a stamp in the user's cache remembers the
file that agreed). One that does not is said in one line and never used (the run's own is
remade).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..base.errors import CnnlabError
from ..base.fileio import atomic_write_json, sha256_of
from ..base.progress import stderr_console
from ..base.typed import read_typed, to_json_dict
from ..config.common import ENGINES
from ..models import Classifier
from ..models.modes import eval_mode
from .contract import EXPORT_MANIFEST, ExportManifest, ModelCard, versions

log = logging.getLogger("cnnlab")

ENGINE_FOLDER, ENGINE_RECORD, ENGINE_GRAPH = "engine", "engine.json", "graph.onnx"
MAX_DIFFERENCE = 1e-4  # largest |ONNX Runtime - PyTorch| of an output for the graph to be used
# auto runs ONNX Runtime from this many conv and dense FLOPs an image (EfficientNet-Lite0 at 224
# px: 768M, 17 images/s eager on 2 cores). Below it eager PyTorch runs hundreds to tens of
# thousands of images a second (the default network: 8.5M, 2,800/s in NCHW), and the one-off
# export (3-4 s for a small network) costs more than ONNX Runtime would save on any folder.
AUTO_MIN_FLOPS = 100e6
PARITY_BATCHES = (3, 1)  # batch sizes of the parity check: the graph's batch size is free

# Graphs (path, SHA-256, what they were made from) that agreed with eager PyTorch in this process,
# and those that did not (so that each is said once).
_AGREED: set[tuple[str, str, str]] = set()
_DISAGREED: set[tuple[str, str, str]] = set()


class EngineUnavailable(Exception):
    """Why ONNX Runtime cannot run a model; `said`: worth a warning under auto (not for the
    expected cases: a GPU, a run from before weights were checksummed)."""

    def __init__(self, reason: str, said: bool = True) -> None:
        super().__init__(reason)
        self.said = said


@dataclass(frozen=True)
class EngineRecord:
    """The JSON record beside a graph: what it was made from, and how well it matched PyTorch."""

    UNKNOWN_KEYS = "refuse"  # a record of another layout is remade, not half read

    key: dict[str, Any]  # what the graph computes with: weights' SHA-256, flip TTA, temperature
    graph_sha256: str | None  # None where no graph is kept (the export failed or did not match)
    max_abs_difference: float | None
    passed: bool
    reason: str | None  # why it is not used
    versions: dict[str, str]


def forward_engine(run: Path, model: Classifier, card: ModelCard, engine: str,
                   device: torch.device) -> nn.Module:
    """What runs a run's `model` forward for a verb: `model` itself, or its ONNX Runtime graph (a
    module with the same interface: pixels in, logits out, predict_proba)."""
    if not _wanted(engine, model, card.input.shape):
        return model
    try:
        _check_possible(device)
        if card.weights_sha256 is None:
            raise EngineUnavailable("model.json names no weights checksum to key the graph by",
                                    said=False)
        module = cache(lambda: _exported_graph(model))
        export = _passing_export(Path(run), card)
        if export is not None and _agrees(*export, _key(card), module, card.input.shape):
            return _run_session(run, export[0], card)
        graph = _graph(Path(run) / ENGINE_FOLDER / ENGINE_RECORD,
                       Path(run) / ENGINE_FOLDER / ENGINE_GRAPH, _key(card), module,
                       card.input.shape)
        return _run_session(run, graph, card)
    except EngineUnavailable as reason:
        return _fallback(engine, reason, model)


def cached_engine(run: Path, card: ModelCard, engine: str,
                  device: torch.device) -> nn.Module | None:
    """A run's ONNX Runtime graph where one made for these weights is already there, intact and
    in agreement with them (the PyTorch model is built for that check only once a process: timm's
    import alone takes 3 s); else None. A graph of the run's own that disagrees is deleted."""
    if engine == "torch" or device.type != "cpu" or card.weights_sha256 is None:
        return None
    run, key = Path(run), _key(card)
    module = cache(lambda: _exported_graph(_load_model(run)))
    found = _passing_export(run, card)
    if found is None or not _agrees(*found, key, module, card.input.shape):
        found = _recorded_graph(run / ENGINE_FOLDER / ENGINE_RECORD,
                                run / ENGINE_FOLDER / ENGINE_GRAPH, key)
        if found is None:
            return None
        if not _agrees(*found, key, module, card.input.shape, own=True):
            found[0].unlink(missing_ok=True)  # no longer intact: remade when next wanted
            return None
    try:
        return _run_session(run, found[0], card)
    except EngineUnavailable:
        return None


def feature_engine(model: Classifier, input_shape: tuple[int, int, int], engine: str,
                   device: torch.device, make: bool = True) -> nn.Module | None:
    """ONNX Runtime's graph of what `model`'s output layer sees, features (B, F), kept in the
    cache folder under the SHA-256 of the backbone's tensors; None where PyTorch should run.
    Without `make`, only a graph already made (by the linear probe, say) is used."""
    if not _wanted(engine, model, input_shape):
        return None
    try:
        _check_possible(device)
        from ..data.builtin import cache_dir

        digest = _backbone_sha256(model, input_shape)
        stem = cache_dir() / ENGINE_FOLDER / f"features-{digest[:24]}"
        graph = _graph(stem.with_suffix(".json"), stem.with_suffix(".onnx"),
                       {"backbone_sha256": digest}, cache(lambda: _feature_graph(model)),
                       input_shape, make)
        return _session(graph)
    except EngineUnavailable as reason:
        return _fallback(engine, reason, None)


def graph_output(card: ModelCard) -> str:
    """What a run's graph gives: the logits, or with flip TTA the averaged log-probabilities."""
    return "log_probabilities" if card.flip_tta else "logits"


def _wanted(engine: str, model: nn.Module, input_shape: tuple[int, int, int]) -> bool:
    if engine not in ENGINES:
        raise CnnlabError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if engine == "torch" or not isinstance(model, Classifier):  # an export is already ORT
        return False
    return engine == "onnx" or flops_per_image(model, input_shape) >= AUTO_MIN_FLOPS


@torch.no_grad()
def flops_per_image(model: nn.Module, input_shape: tuple[int, int, int]) -> float:
    """The conv and dense layers' FLOPs (2 per multiply-add) for one image, from the shapes one
    forward pass gives. Hand-written: torch's FlopCounterMode takes 1.4 s to start in a fresh
    process, longer than a small network's whole prediction; this takes one forward pass."""
    total = [0.0]

    def count(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
        else:
            per_output = module.in_features
        total[0] += 2.0 * per_output * output.numel()

    handles = [m.register_forward_hook(count) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    device = next(model.parameters()).device
    try:
        with eval_mode(model):
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return total[0]


def _fallback(engine: str, reason: EngineUnavailable, instead: Any) -> Any:
    if engine == "onnx":
        raise CnnlabError(f"--engine onnx: {reason}; use --engine torch") from None
    if reason.said:
        log.warning("%s: PyTorch runs it instead (--engine torch says nothing)", reason)
    return instead


def _check_possible(device: torch.device) -> None:
    if device.type != "cpu":
        raise EngineUnavailable(f"the model runs on {device.type}, ONNX Runtime here on the CPU",
                                said=False)
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise EngineUnavailable("onnxruntime is not installed") from None


def _key(card: ModelCard) -> dict[str, Any]:
    # With flip TTA the graph gives the log-probabilities of the temperature-scaled softmax, so
    # the temperature is inside it; otherwise it gives raw logits and the temperature stays out.
    return {"weights_sha256": card.weights_sha256, "flip_tta": card.flip_tta,
            "temperature": card.temperature if card.flip_tta else 1.0}


def _run_session(run: Path, graph: Path, card: ModelCard) -> nn.Module:
    own = graph == Path(run) / ENGINE_FOLDER / ENGINE_GRAPH  # else the user's export
    return _session(graph, temperature=1.0 if card.flip_tta else card.temperature, own=own)


def _session(graph: Path, temperature: float = 1.0, own: bool = True) -> nn.Module:
    from ..models.onnx import OnnxClassifier

    try:
        return OnnxClassifier(graph, threads=torch.get_num_threads(), temperature=temperature,
                              own=own)
    except CnnlabError as error:
        raise EngineUnavailable(str(error)) from None


def _passing_export(run: Path, card: ModelCard) -> tuple[Path, str] | None:
    """RUN/export/model.onnx and its SHA-256, where `cnnlab export` made it from these weights
    and it passed."""
    folder = run / "export"
    if not (folder / EXPORT_MANIFEST).is_file():
        return None
    try:
        manifest = ExportManifest.read(folder / EXPORT_MANIFEST)
    except CnnlabError:
        return None
    graph = folder / manifest.files.get("fp32", "")
    recorded = manifest.sha256.get(graph.name)
    if (_key(manifest.card) != _key(card) or not manifest.parity.fp32.passed or recorded is None
            or not graph.is_file() or sha256_of(graph) != recorded):
        return None
    return graph, recorded


def _graph(record_path: Path, graph_path: Path, key: dict[str, Any],
           module: Callable[[], nn.Module], input_shape: tuple[int, int, int],
           make: bool = True) -> Path:
    """The graph at `graph_path` for `key`: the one made before where it agrees with `module()`,
    else made now from it."""
    record = _read_record(record_path)
    if record is not None and record.key == key and not record.passed:
        raise EngineUnavailable(f"the ONNX graph {graph_path} {record.reason}")
    found = _recorded_graph(record_path, graph_path, key)
    if found is not None and _agrees(*found, key, module, input_shape, own=True):
        return graph_path
    if not make:
        raise EngineUnavailable("no graph made yet", said=False)
    record = _make(record_path, graph_path, key, module(), input_shape)
    if not record.passed:
        raise EngineUnavailable(f"the ONNX graph {graph_path} {record.reason}")
    _agreed(_made_from(graph_path, record.graph_sha256 or "", key))
    return graph_path


def _recorded_graph(record_path: Path, graph_path: Path,
                    key: dict[str, Any]) -> tuple[Path, str] | None:
    """The graph and its SHA-256 where its record says it was made for `key`, passed and is
    intact on disk; else None."""
    record = _read_record(record_path)
    if record is None or record.key != key or not record.passed or not _intact(graph_path, record):
        return None
    return graph_path, record.graph_sha256 or ""


def _made_from(graph: Path, digest: str, key: dict[str, Any]) -> tuple[str, str, str]:
    return str(graph.resolve()), digest, json.dumps(key, sort_keys=True)


def _agrees(graph: Path, digest: str, key: dict[str, Any], module: Callable[[], nn.Module],
            input_shape: tuple[int, int, int], own: bool = False) -> bool:
    """Whether the graph of bytes `digest`, recorded as made for `key`, computes what `module()`
    does (the parity check), measured once a process; a graph that does not is said once."""
    made_from = _made_from(graph, digest, key)
    if made_from in _AGREED or made_from in _DISAGREED:
        return made_from in _AGREED
    if _stamp_holds(made_from):
        _AGREED.add(made_from)
        return True
    try:
        difference = _parity(graph, module(), input_shape, own)
    except Exception:  # a graph altered until ONNX Runtime refuses it, or of another shape
        difference = math.inf
    if difference <= MAX_DIFFERENCE:
        _agreed(made_from)
        return True
    _DISAGREED.add(made_from)
    log.warning("%s does not agree with the weights its record names (its outputs differ from "
                "eager PyTorch's by %.1e, more than %g): not used", graph, difference,
                MAX_DIFFERENCE)
    return False


def _agreed(made_from: tuple[str, str, str]) -> None:
    """Remember that the graph agreed: in this process, and in a stamp for the next processes."""
    _AGREED.add(made_from)
    with contextlib.suppress(OSError):  # a read-only cache: each process checks again, no loss
        atomic_write_json(_stamp_path(made_from), {"made_from": list(made_from),
                                                   "file": _identity(Path(made_from[0]))})


def _stamp_holds(made_from: tuple[str, str, str]) -> bool:
    """Whether the graph agreed before and its file has not been touched since. The stamp holds
    the file's inode and change time (ctime), which no write, rename or copy can keep and no
    user can set: a graph rewritten with its record is checked again, while one that agreed is
    used without building the PyTorch model (what the cached graph is for: timm's import alone
    takes 3 s)."""
    try:
        stamp = json.loads(_stamp_path(made_from).read_text(encoding="utf-8"))
        return (stamp["made_from"] == list(made_from)
                and stamp["file"] == _identity(Path(made_from[0])))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _identity(path: Path) -> list[int]:
    status = path.stat()
    return [status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns]


def _stamp_path(made_from: tuple[str, str, str]) -> Path:
    """One small file a graph, in the user's cache (a run folder stays as the run wrote it)."""
    from ..data.builtin import cache_dir

    name = hashlib.sha256("\n".join(made_from).encode("utf-8", "surrogateescape")).hexdigest()
    return cache_dir() / ENGINE_FOLDER / "agreed" / f"{name[:32]}.json"


def _read_record(path: Path) -> EngineRecord | None:
    try:
        return read_typed(EngineRecord, json.loads(path.read_text(encoding="utf-8")), str(path))
    except (OSError, ValueError, CnnlabError):  # none, unreadable or from another version: remade
        return None


def _intact(graph: Path, record: EngineRecord) -> bool:
    return graph.is_file() and sha256_of(graph) == record.graph_sha256


def _make(record_path: Path, graph_path: Path, key: dict[str, Any], module: nn.Module,
          input_shape: tuple[int, int, int]) -> EngineRecord:
    """Export the graph, measure it against PyTorch, and record both (a failure too, so that it
    is not tried again for the same key)."""
    from ..models.onnx_graph import module_to_onnx

    # Seconds to a minute for a large network, once: said, so that the wait is not a mystery.
    stderr_console().print(f"exporting the network to {graph_path} for ONNX Runtime (once; "
                           f"--engine torch skips it)", highlight=False)
    try:
        graph_path.parent.mkdir(parents=True, exist_ok=True)
        module_to_onnx(module, input_shape, graph_path, say=log.info)
    except OSError as error:
        raise EngineUnavailable(f"cannot write {graph_path}: {error.strerror or error}") from None
    except Exception as error:  # the exporters raise many kinds for unsupported code
        return _write_record(record_path, key, None, None, f"could not be made ({_first(error)})")
    difference = _parity(graph_path, module, input_shape)
    if difference > MAX_DIFFERENCE:
        graph_path.unlink()
        differs = (f"differs from PyTorch by {difference:.1e} (more than {MAX_DIFFERENCE:g})"
                   if math.isfinite(difference) else "gives outputs that are not numbers")
        return _write_record(record_path, key, None, difference, differs)
    return _write_record(record_path, key, graph_path, difference, None)


def _write_record(path: Path, key: dict[str, Any], graph: Path | None, difference: float | None,
                  reason: str | None) -> EngineRecord:
    import onnxruntime

    if difference is not None and not math.isfinite(difference):
        difference = None  # outputs that are not numbers: JSON has no infinity, the reason says it
    record = EngineRecord(key=key, graph_sha256=sha256_of(graph) if graph else None,
                          max_abs_difference=difference, passed=reason is None, reason=reason,
                          versions={**versions(), "onnxruntime": onnxruntime.__version__})
    try:
        atomic_write_json(path, to_json_dict(record))
    except OSError as error:
        raise EngineUnavailable(f"cannot write {path}: {error.strerror or error}") from None
    return record


@torch.no_grad()
def _parity(graph: Path, module: nn.Module, input_shape: tuple[int, int, int],
            own: bool = False) -> float:
    """The largest difference between the graph's outputs and eager PyTorch's, on seeded random
    pixels in batches of several sizes (`own`: a graph cnnlab wrote, see open_session)."""
    from ..models.onnx import open_session

    session = open_session(graph, own=own)
    name = session.get_inputs()[0].name
    generator = torch.Generator().manual_seed(0)
    largest = 0.0
    for size in PARITY_BATCHES:
        pixels = torch.rand(size, *input_shape, generator=generator)
        theirs = torch.from_numpy(session.run(None, {name: pixels.numpy()})[0])
        difference = float((module(pixels) - theirs).abs().max())
        # max() keeps 0.0 against a NaN (nan > 0.0 is False): outputs that are not numbers agree
        # with nothing
        largest = max(largest, difference) if math.isfinite(difference) else math.inf
    return largest


def _load_model(run: Path) -> Classifier:
    from .folder import load_model

    return load_model(run)[0]


def _exported_graph(model: Classifier) -> nn.Module:
    from ..models.onnx_graph import ExportedGraph

    return ExportedGraph(model.cpu().eval())


def _feature_graph(model: Classifier) -> nn.Module:
    from ..models.onnx_graph import FeatureGraph

    return FeatureGraph(model)


def _backbone_sha256(model: Classifier, input_shape: tuple[int, int, int]) -> str:
    """SHA-256 of everything but the output layer: names, shapes and bytes of every tensor."""
    head = {id(t) for t in model.output_layer.parameters()}
    digest = hashlib.sha256(repr((type(model.network).__name__, input_shape)).encode())
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in head:
            continue
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}{tuple(data.shape)}{data.dtype}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _first(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
