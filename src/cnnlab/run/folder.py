"""The run folder: model.safetensors + model.json (the contract between stages), last.ckpt,
metrics.csv, config.yaml. Every write is atomic; every load is safe (no code runs)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import pickle
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ..base.errors import CnnlabError
from ..base.fileio import atomic_write, atomic_write_json, atomic_write_text, sha256_of
from ..config import TrainConfig
from ..models import Classifier, create_model
from .contract import EXPORT_MANIFEST, ExportManifest, InputSpec, ModelCard, Preprocessing, versions
from .exported import check_signature, verify_files
from .results import EpochRow, TrainingResults

if TYPE_CHECKING:
    from ..data import DatasetSplits

WEIGHTS, META, CHECKPOINT, METRICS, CONFIG = ("model.safetensors", "model.json", "last.ckpt",
                                              "metrics.csv", "config.yaml")
RESULTS = "results.json"  # how training ended: status, best epoch, validation and test accuracy


def check_writable(out: str | None, root: str = "runs") -> None:
    """Fail before any data loads when the run folder cannot be made or written."""
    target = Path(out) if out else Path(root)
    if target.exists() and not target.is_dir():
        raise CnnlabError(f"--out {target} is a file, not a folder; give a folder name")
    existing = next(p for p in (target, *target.parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CnnlabError(f"cannot write the run folder {target}: {existing.resolve()} is not "
                          f"writable")


def new_run_dir(out: str | None, default_name: str, root: str = "runs") -> Path:
    """runs/NAME, or NAME-2, NAME-3, ... when it is taken; never reuses a folder with files."""
    base = Path(out) if out else Path(root) / re.sub(r"[^A-Za-z0-9._-]+", "-", default_name)
    candidate, number = base, 1
    while candidate.exists() and any(candidate.iterdir()):
        number += 1
        candidate = base.with_name(f"{base.name}-{number}")
    candidate.mkdir(parents=True, exist_ok=True)
    return candidate


def uses_flip(config: TrainConfig, data: DatasetSplits) -> bool:
    """Whether training flips images: as asked, else where the data allows it."""
    if config.augment.flip is not None:
        return config.augment.flip
    # A frozen backbone trains fastest on cached features, which augmentation would invalidate.
    return data.flip_ok and config.freeze != "backbone"


def training_card(config: TrainConfig, data: DatasetSplits, architecture: str, model_name: str,
                  mean: list[float], std: list[float]) -> ModelCard:
    """The model card a training run writes: what the model is and how it was fed."""
    return ModelCard(
        name=model_name, architecture=architecture, class_names=tuple(data.class_names),
        input=InputSpec(*data.input_shape), pretrained=config.pretrained,
        preprocessing=Preprocessing(interpolation=config.data.resize_filter, mean=tuple(mean),
                                    std=tuple(std)),
        dataset=data.name, flip_augmented=uses_flip(config, data),
        flip_tta=config.tta and data.flip_ok, excluded=dict(data.excluded))


CHECKSUM_SUFFIX = ".sha256"


def _record(path: Path) -> Path:
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def _write_record(path: Path, digests: list[str]) -> None:
    atomic_write_text(_record(path), "".join(f"{digest}  {path.name}\n" for digest in digests))


def recorded_digests(path: Path) -> list[str]:
    """The SHA-256 digests PATH.sha256 accepts: one, or two while a new PATH replaces the old."""
    record = _record(path)
    if not record.is_file():
        return []
    lines = record.read_text(encoding="utf-8", errors="replace").splitlines()
    return [line.split()[0] for line in lines if line.split()]


def write_checksum(path: Path) -> None:
    """PATH.sha256 beside PATH (sha256sum's format), so damage to PATH is found on loading."""
    _write_record(path, [sha256_of(path)])


@contextmanager
def checksum_transition(path: Path, digest: str) -> Iterator[None]:
    """Around the replacement of PATH by bytes of SHA-256 `digest`: the record first accepts the
    new digest beside the old one, and drops the old one once the block is done. A kill at any
    moment leaves a record that accepts the PATH on disk, old or new."""
    old = recorded_digests(path) or ([sha256_of(path)] if path.is_file() else [])
    _write_record(path, [digest, *(d for d in old if d != digest)])
    yield
    _write_record(path, [digest])


def write_checked(path: Path, data: bytes) -> str:
    """PATH and PATH.sha256, replaced so that they agree at every moment; returns the digest."""
    digest = hashlib.sha256(data).hexdigest()
    with checksum_transition(path, digest):
        atomic_write(path, lambda tmp: tmp.write_bytes(data))
    return digest


def verify_checksum(path: Path) -> str | None:
    """A file whose bytes differ from its recorded SHA-256 is one clear error; returns its digest.
    Files written before checksums were kept have none and are read as they are (None)."""
    expected = recorded_digests(path)
    if not expected:
        return None
    actual = sha256_of(path)
    if actual not in expected:
        raise CnnlabError(f"{path} is damaged: its SHA-256 does not match {_record(path).name}; "
                          f"nothing was loaded or overwritten (restore it from a copy, or delete "
                          f"it and its {CHECKSUM_SUFFIX} and train again)")
    return actual


def save_model(run_dir: Path, model: Classifier, card: ModelCard) -> None:
    """Weights as safetensors (with their checksum), then model.json, which says how to rebuild
    and feed them."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # Serialized in memory and written by Python: a full disk is then an OSError naming the file,
    # where safetensors' own writer raises an error of its own type without one. The class names
    # travel inside the weights, so a model.json that reorders them is found on loading.
    data = save(state, metadata={"class_names": json.dumps(list(card.class_names))})
    digest = hashlib.sha256(data).hexdigest()
    weights = run_dir / WEIGHTS
    # model.json names the weights' digest (binding the two); it is written while the record
    # accepts both digests, so a kill between the two files leaves a pair that still loads.
    with checksum_transition(weights, digest):
        atomic_write(weights, lambda tmp: tmp.write_bytes(data))
        atomic_write_text(run_dir / META, card.replace(versions=versions(),
                                                       weights_sha256=digest).to_json())


def results_folder(run_dir: Path, verb: str, out: str | None, qualifiers: list[str]) -> Path:
    """Where a verb writes its results: --out, else RUN/VERB, with a suffix for each setting that
    is not the default (RUN/evaluate-val, RUN/attack-fgsm), so one never overwrites another."""
    folder = Path(out) if out else run_dir / "-".join([verb, *qualifiers])
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def data_qualifiers(split: str, data: str | None) -> list[str]:
    """The suffixes of results on another split or other data than the run's test split."""
    qualifiers = [split] if split != "test" else []
    if data:
        qualifiers.append(re.sub(r"[^A-Za-z0-9._]+", "-", Path(data.rstrip("/")).name or data))
    return qualifiers


def write_results(run_dir: Path, results: TrainingResults) -> None:
    """results.json, and the test accuracy into model.json beside the weights it belongs to."""
    atomic_write_json(run_dir / RESULTS, results.to_dict())
    if (run_dir / META).is_file() and results.test_accuracy is not None:
        card = read_card(run_dir).replace(test_accuracy=results.test_accuracy)
        atomic_write_text(run_dir / META, card.to_json())


def write_card(run_dir: str | Path, card: ModelCard) -> None:
    """model.json for weights already saved (a card that gains a calibration, say)."""
    atomic_write_text(Path(run_dir) / META, card.to_json())


def read_card(run_dir: str | Path) -> ModelCard:
    """The run's model.json, checked field by field."""
    return ModelCard.read(Path(run_dir) / META)


def build_model(card: ModelCard) -> Classifier:
    """The untrained network model.json describes, with its normalization."""
    model, _, _ = create_model(card.architecture, input_shape=card.input.shape,
                               num_classes=card.num_classes, mean=card.preprocessing.mean,
                               std=card.preprocessing.std)
    model.flip_tta, model.temperature = card.flip_tta, card.temperature
    return model


def weight_shapes(path: Path, tensors: int) -> dict[str, list[int]]:
    """The shape of every tensor a safetensors file holds, from its header (no tensor is read)."""
    header = _safetensors_header(path, tensors)
    header.pop("__metadata__", None)
    return {name: list(entry.get("shape", [])) for name, entry in header.items()
            if isinstance(entry, dict)}


def match_pruned(model: torch.nn.Module, run_dir: Path, card: ModelCard) -> None:
    """A pruned run's network (built unpruned from its name) given its weights' shapes."""
    if card.pruned is not None and (run_dir / WEIGHTS).is_file():
        from ..models.prune import reshape_to

        reshape_to(model, weight_shapes(run_dir / WEIGHTS, len(model.state_dict())))


def export_of(path: str | Path) -> tuple[ExportManifest, Path] | None:
    """An export folder (or an .onnx file in one): its export.json and the model file, with every
    ONNX file checked against the SHA-256 export.json records; None for anything else."""
    path = Path(path)
    folder = path.parent if path.suffix == ".onnx" else path
    if not (folder / EXPORT_MANIFEST).is_file():
        if path.suffix == ".onnx":
            raise CnnlabError(f"{path}: no {EXPORT_MANIFEST} beside it, so its classes and "
                              f"preprocessing are unknown; export with `cnnlab export RUN`")
        return None
    manifest = ExportManifest.read(folder / EXPORT_MANIFEST)
    model_file = path if path.suffix == ".onnx" else folder / manifest.files.get("fp32", "")
    if not model_file.is_file():
        raise CnnlabError(f"{model_file} does not exist")
    verify_files(folder, manifest, model_file)
    return manifest, model_file


def load_model(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[Classifier, ModelCard]:
    """Rebuild the model from model.json and load model.safetensors into it; an export folder or
    .onnx file gives its ONNX Runtime model (on the CPU) instead."""
    exported = export_of(run_dir)
    if exported is not None:
        from ..models.onnx import OnnxClassifier

        manifest, model_file = exported
        # logits leave the graph raw; the temperature is applied as the Classifier applies it
        temperature = manifest.card.temperature if manifest.output == "logits" else 1.0
        model = OnnxClassifier(model_file, temperature=temperature)
        check_signature(model.session, manifest, model_file)
        return model, manifest.card  # type: ignore[return-value]
    run_dir = Path(run_dir)
    card = read_card(run_dir)
    model = build_model(card)
    match_pruned(model, run_dir, card)
    if (run_dir / WEIGHTS).is_file():
        check_weights(run_dir / WEIGHTS, card, list(model.state_dict()))
    try:
        state = load_file(str(run_dir / WEIGHTS))
    except (SafetensorError, OSError, FileNotFoundError) as error:
        raise CnnlabError(f"cannot load {run_dir / WEIGHTS}: {error}") from None
    if not all(torch.isfinite(tensor).all() for tensor in state.values()
               if tensor.is_floating_point()):
        raise CnnlabError(f"{run_dir / WEIGHTS} holds weights that are not finite (NaN or "
                          f"infinite): the training that wrote them diverged")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CnnlabError(f"{run_dir / WEIGHTS} does not match the architecture in {META} "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.to(device).eval(), card


def network_summary(run_dir: str | Path, card: ModelCard, input_shape: tuple[int, ...] | None = None,
                    model: Classifier | None = None):
    """The per-layer table of a run's network: from its name, or for a pruned one (whose shapes
    its name no longer says) from the network itself (`model`, else loaded)."""
    from ..models.summary import summarize, summarize_model

    shape = tuple(input_shape or card.input.shape)
    if card.pruned is None:
        return summarize(card.architecture, shape, card.num_classes)
    return summarize_model(card.name, model or load_model(run_dir)[0], shape)


def check_weights(path: Path, card: ModelCard, keys: list[str]) -> None:
    """Before a tensor is read: PATH's bytes match their checksum and the digest model.json names
    (so weights from another run are refused), and its header names the architecture's tensors
    and the card's class names."""
    actual = verify_checksum(path)
    if card.weights_sha256 is not None:
        actual = actual or sha256_of(path)
        # A kill between the weights and model.json leaves both digests in the record: whole.
        if actual != card.weights_sha256 and card.weights_sha256 not in recorded_digests(path):
            raise CnnlabError(f"{path} is not the weights {META} describes (its SHA-256 differs "
                              f"from {META}'s weights_sha256): copy a run folder whole, never "
                              f"its files one by one")
    header = _safetensors_header(path, len(keys))
    metadata = header.pop("__metadata__", None)
    metadata = metadata if isinstance(metadata, dict) else {}
    if sorted(header) != sorted(keys):
        raise CnnlabError(f"{path} does not match the architecture in {META} (its tensors are "
                          f"not the model's: {sorted(set(header) ^ set(keys))[:3]})")
    saved = metadata.get("class_names")
    if saved is not None and saved != json.dumps(list(card.class_names)):
        raise CnnlabError(f"{path.parent / META}: class_names differ from the names the weights "
                          f"were saved with ({saved[:200]}); restore {META} from the run")


# A safetensors header holds a name, dtype, shape and offsets per tensor: a few hundred bytes each.
_HEADER_BYTES_PER_TENSOR = 4096


def _safetensors_header(path: Path, tensors: int) -> dict[str, Any]:
    """The JSON header of a safetensors file, refused before parsing when it is far larger than
    one for `tensors` tensors could be."""
    limit = 65536 + _HEADER_BYTES_PER_TENSOR * tensors
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if size > limit:
                raise CnnlabError(f"{path}: its header claims {size:,} bytes, more than the "
                                  f"{limit:,} its architecture needs; not a model of this run")
            header = json.loads(handle.read(size))
    except (OSError, ValueError) as error:
        raise CnnlabError(f"cannot load {path}: {error}") from None
    if not isinstance(header, dict):
        raise CnnlabError(f"cannot load {path}: its header is not a JSON object")
    return header


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_checked(path, buffer.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with weights_only=True: tensors and plain containers only, no code."""
    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CnnlabError(f"{path} is empty (0 bytes): not a readable checkpoint")
    verify_checksum(path)
    try:
        # torch warns when it refuses a pickle, in words that read like advice to turn
        # weights_only off; the error below says what happened instead.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).splitlines()[0][:200]
        raise CnnlabError(f"refusing to load {path}: it holds objects other than tensors and "
                          f"plain data, which could run code ({reason})") from None
    except (RuntimeError, EOFError, OSError, ValueError, IndexError) as error:
        raise CnnlabError(f"{path} is not a readable checkpoint: "
                          f"{str(error).splitlines()[0][:200]}") from None


def write_metrics(run_dir: Path, history: list[EpochRow]) -> None:
    """metrics.csv: one row per epoch (EpochRow.to_dict's columns; NaN where a figure is not)."""
    if not history:
        return
    rows = [row.to_dict() for row in history]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[-1]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(run_dir / METRICS, buffer.getvalue())


def read_metrics(run_dir: str | Path) -> list[EpochRow]:
    """metrics.csv's rows, or none where training has not finished an epoch."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return [EpochRow.from_dict(row) for row in csv.DictReader(handle)]
    except (OSError, KeyError, TypeError, ValueError) as error:
        raise CnnlabError(f"cannot read {path}: {error}") from None
