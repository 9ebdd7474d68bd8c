"""model.json as a type: what a trained model needs to be rebuilt and fed, in one frozen dataclass.

As timm's PretrainedCfg, it travels with the weights (model.safetensors) and is the contract between
training and every later stage (predict, evaluate, explain, attack, export, serve, report). It has one
writer (`ModelCard.to_json`) and one reader (`ModelCard.from_json`), which names a missing or
malformed field in one line. Nothing else reads model.json by string keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base.errors import CnnlabError
from ..calibrate.settings import UNKNOWN_SCORE_CHOICES
from .results import ExportParity

FORMAT = "cnnlab-model/1"  # the JSON layout; bump it (and read the old one) when fields change
PRETRAINED_PREFIX = "pretrained:"


@dataclass(frozen=True)
class InputSpec:
    """What the model takes: (channels, height, width) pixels in [0, 1]."""

    channels: int
    height: int
    width: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.channels, self.height, self.width


@dataclass(frozen=True)
class Preprocessing:
    """How any image becomes the model's input (data.images does it, the same way everywhere).

    The image is converted to `channels`, scaled so it covers (height, width) / crop_pct with the
    `interpolation` filter, its centre (height, width) cut out, and its pixels divided by 255.
    `mean` and `std` are applied inside the model (Classifier), so exports and attacks take pixels.
    """

    interpolation: str = "bilinear"
    crop_pct: float = 1.0
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    scale: str = "pixels / 255"
    resize: str = "cover then center crop"


@dataclass(frozen=True)
class Calibration:
    """Temperature scaling fitted on the validation split after training (Guo et al., 2017): the
    probabilities are softmax(logits / temperature); the ECE on that split before and after."""

    temperature: float
    ece_before: float
    ece_after: float
    images: int


UNKNOWN_SCORES = UNKNOWN_SCORE_CHOICES


@dataclass(frozen=True)
class UnknownDetector:
    """How the model says "none of my classes": a score (higher: more like the training images)
    and the threshold below which an image is unknown, set on the validation split so that `keep`
    of the known images pass. A feature-based score keeps its statistics in `file`."""

    score: str  # one of UNKNOWN_SCORES
    threshold: float
    keep: float
    file: str | None = None  # e.g. unknown.safetensors in the run folder


@dataclass(frozen=True)
class ModelCard:
    """Everything model.json says about a trained model."""

    name: str  # the network's name (a registry name, "custom", or timm:NAME)
    architecture: str  # what create_model builds: a layer spec or timm:NAME
    class_names: tuple[str, ...]
    input: InputSpec
    preprocessing: Preprocessing
    pretrained: bool = False  # started from ImageNet weights
    dataset: str | None = None
    flip_augmented: bool = False  # trained on mirror images too
    flip_tta: bool = False  # predictions average the image and its mirror image
    epoch: int | None = None  # the epoch whose weights these are
    val_accuracy: float | None = None
    test_accuracy: float | None = None  # of these weights on the data's test split, after training
    head: str | None = None  # how the output layer was fitted, where not by gradient steps
    # The splits whose images these weights were fitted to: the linear probe refits on train and
    # val, after which val is no longer held out and evaluate must not report it as if it were.
    fitted_on: tuple[str, ...] = ("train",)
    excluded: dict[str, int] = field(default_factory=dict)  # images --exclude left out, by split
    calibration: Calibration | None = None
    unknown: UnknownDetector | None = None
    versions: dict[str, str] = field(default_factory=dict)
    weights_sha256: str | None = None  # the SHA-256 of model.safetensors: binds card and weights

    @property
    def temperature(self) -> float:
        return self.calibration.temperature if self.calibration is not None else 1.0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def replace(self, **changes: Any) -> ModelCard:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["architecture"] = {"spec": self.architecture}
        values["class_names"] = list(self.class_names)
        values["fitted_on"] = list(self.fitted_on)
        for key in ("mean", "std"):
            values["preprocessing"][key] = list(values["preprocessing"][key])
        return {"format": FORMAT, **values}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, values: Any, where: str = "model.json") -> ModelCard:
        """Check and convert a parsed model.json; a bad field is one clear CnnlabError."""
        reader = _Reader(values, where)
        if reader.get("format", str) != FORMAT:
            raise CnnlabError(f"{where}: unsupported model format {values.get('format')!r} "
                              f"(this cnnlab reads {FORMAT})")
        card = cls(
            name=reader.get("name", str),
            architecture=_Reader(reader.get("architecture", dict), f"{where} architecture")
            .get("spec", str),
            class_names=tuple(reader.get("class_names", list, item=str)),
            input=_input(reader.section("input")),
            preprocessing=_preprocessing(reader.section("preprocessing")),
            pretrained=reader.get("pretrained", bool, default=False),
            dataset=reader.get("dataset", str, default=None),
            flip_augmented=reader.get("flip_augmented", bool, default=False),
            flip_tta=reader.get("flip_tta", bool, default=False),
            epoch=reader.get("epoch", int, default=None),
            val_accuracy=reader.get("val_accuracy", float, default=None),
            test_accuracy=reader.get("test_accuracy", float, default=None),
            head=reader.get("head", str, default=None),
            fitted_on=tuple(reader.get("fitted_on", list, item=str, default=["train"])),
            excluded=_excluded(reader),
            calibration=_calibration(reader),
            unknown=_unknown(reader),
            versions=reader.get("versions", dict, default={}),
            weights_sha256=_digest(reader),
        )
        if len(card.class_names) < 2:
            raise CnnlabError(f"{where}: class_names must name two or more classes")
        if len(set(card.class_names)) != len(card.class_names):
            repeated = sorted({n for n in card.class_names if card.class_names.count(n) > 1})
            raise CnnlabError(f"{where}: class_names name a class twice ({repeated[:3]})"[:300])
        if len(card.preprocessing.mean) != card.input.channels or \
                len(card.preprocessing.std) != card.input.channels:
            raise CnnlabError(f"{where}: preprocessing mean and std need one value per input "
                              f"channel ({card.input.channels})")
        return card

    @classmethod
    def read(cls, path: str | Path) -> ModelCard:
        """model.json (or a run folder's), checked field by field."""
        path = Path(path)
        if path.is_dir():
            path = path / "model.json"
        if not path.parent.is_dir():
            raise CnnlabError(f"{path.parent}: no such run folder{nearest_folder(path.parent)}")
        if not path.is_file():
            raise CnnlabError(f"{path.parent} is not a run folder with a trained model "
                              f"({path.name} missing); train one with `cnnlab train`")
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CnnlabError(f"{path} is not valid JSON: {error}") from None
        return cls.from_dict(values, str(path))


def nearest_folder(missing: Path) -> str:
    """' (did you mean runs/X?)' for the existing folder beside `missing` whose name is closest."""
    parent = missing.parent
    if not parent.is_dir():
        return ""
    names = [p.name for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")]
    close = difflib.get_close_matches(missing.name, names, n=1, cutoff=0.5)
    if not close:  # a run named by its data alone: runs/flowers12 for runs/flowers12-MODEL
        close = sorted(name for name in names if name.startswith(f"{missing.name}-"))[:1]
    return f" (did you mean {parent / close[0]}?)" if close else ""


EXPORT_FORMAT = "cnnlab-export/1"
EXPORT_MANIFEST = "export.json"


@dataclass(frozen=True)
class ExportManifest:
    """export.json: an exported model's card (class names, input, preprocessing) and what the
    export wrote and measured. The graph takes `input_name`, float (batch, C, H, W) pixels in
    [0, 1], and gives `output_name`: logits, or log-probabilities with flip test-time augmentation."""

    card: ModelCard
    files: dict[str, str]  # precision ("fp32", "int8") -> file name in the export folder
    sha256: dict[str, str] = field(default_factory=dict)  # file name -> its SHA-256 (none: old export)
    input_name: str = "pixels"
    output_name: str = "logits"
    output: str = "logits"  # or "log_probabilities"
    opset: int | None = None
    exporter: str = "dynamo"  # torch.onnx's exporter that wrote the graph
    data: dict[str, Any] = field(default_factory=dict)  # the run's data settings (for evaluate)
    parity: ExportParity = field(default_factory=ExportParity)
    versions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        card = self.card.to_dict()
        values = {"format": EXPORT_FORMAT,
                  "input": {"name": self.input_name, "shape": ["batch", *self.card.input.shape],
                            "dtype": "float32", "range": [0.0, 1.0]},
                  "output": {"name": self.output_name, "kind": self.output},
                  "class_names": card["class_names"], "preprocessing": card["preprocessing"],
                  "files": self.files, "sha256": self.sha256, "opset": self.opset,
                  "exporter": self.exporter,
                  "parity": self.parity.to_dict(), "data": self.data, "versions": self.versions,
                  "model": card}
        return json.dumps(values, indent=2)

    @classmethod
    def read(cls, path: Path) -> ExportManifest:
        where = str(path)
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CnnlabError(f"cannot read {path}: {error}") from None
        reader = _Reader(values, where)
        if reader.get("format", str) != EXPORT_FORMAT:
            raise CnnlabError(f"{where}: unsupported export format {values.get('format')!r} "
                              f"(this cnnlab reads {EXPORT_FORMAT})")
        files = reader.get("files", dict)
        if not files or not all(isinstance(v, str) and Path(v).name == v for v in files.values()):
            raise CnnlabError(f"{where}: 'files' must name model files inside the export folder")
        output = reader.section("output")
        return cls(card=ModelCard.from_dict(reader.get("model", dict), f"{where} model"),
                   files=files, sha256=reader.get("sha256", dict, default={}),
                   input_name=reader.section("input").get("name", str),
                   output_name=output.get("name", str), output=output.get("kind", str),
                   opset=reader.get("opset", int, default=None),
                   exporter=reader.get("exporter", str, default="dynamo"),
                   data=reader.get("data", dict, default={}),
                   parity=_parity(reader.get("parity", dict, default={}), where),
                   versions=reader.get("versions", dict, default={}))


def _parity(values: dict[str, Any], where: str) -> ExportParity:
    try:
        return ExportParity.from_dict(values)
    except (KeyError, TypeError, ValueError) as error:
        raise CnnlabError(f"{where}: the field 'parity' is malformed ({error})") from None


def _calibration(card: _Reader) -> Calibration | None:
    if card.get("calibration", dict, default=None) is None:
        return None
    reader = card.section("calibration")
    calibration = Calibration(*(reader.get(key, float) for key in ("temperature", "ece_before",
                                                                    "ece_after")),
                              images=reader.get("images", int))
    if not calibration.temperature > 0:
        raise CnnlabError(f"{reader.where}: the temperature must be positive")
    return calibration


def _unknown(card: _Reader) -> UnknownDetector | None:
    if card.get("unknown", dict, default=None) is None:
        return None
    reader = card.section("unknown")
    detector = UnknownDetector(score=reader.get("score", str),
                               threshold=reader.get("threshold", float),
                               keep=reader.get("keep", float),
                               file=reader.get("file", str, default=None))
    if detector.score not in UNKNOWN_SCORES:
        raise CnnlabError(f"{reader.where}: unknown score {detector.score!r} (this cnnlab knows "
                          f"{', '.join(UNKNOWN_SCORES)})")
    if detector.file is not None and Path(detector.file).name != detector.file:
        raise CnnlabError(f"{reader.where}: 'file' must name a file in the run folder")
    return detector


def _input(reader: _Reader) -> InputSpec:
    spec = InputSpec(*(reader.get(key, int) for key in ("channels", "height", "width")))
    if spec.channels not in (1, 3) or spec.height < 1 or spec.width < 1:
        raise CnnlabError(f"{reader.where}: expected 1 or 3 channels and a positive size, got "
                          f"{spec.shape}")
    return spec


INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")  # data.images.RESAMPLING's keys
# crop_pct scales the image to cover size / crop_pct before the centre crop: timm's models use
# 0.8..1.0; below MIN_CROP_PCT the resize would be 1 / crop_pct times the input per side.
MIN_CROP_PCT = 0.05


def _preprocessing(reader: _Reader) -> Preprocessing:
    preprocessing = Preprocessing(
        interpolation=reader.get("interpolation", str, default="bilinear"),
        crop_pct=reader.get("crop_pct", float, default=1.0),
        mean=tuple(reader.get("mean", list, item=float)),
        std=tuple(reader.get("std", list, item=float)),
    )
    if preprocessing.interpolation not in INTERPOLATIONS:
        raise CnnlabError(f"{reader.where}: unknown interpolation "
                          f"{preprocessing.interpolation!r}"[:200] + f" (choose from "
                          f"{', '.join(INTERPOLATIONS)})")
    if not MIN_CROP_PCT <= preprocessing.crop_pct <= 1:
        raise CnnlabError(f"{reader.where}: crop_pct must be a number >= {MIN_CROP_PCT} and "
                          f"<= 1, got {preprocessing.crop_pct!r}")
    values = preprocessing.mean + preprocessing.std
    if not all(math.isfinite(v) for v in values) or not all(s > 0 for s in preprocessing.std):
        raise CnnlabError(f"{reader.where}: mean must be finite and std positive")
    return preprocessing


def _digest(card: _Reader) -> str | None:
    digest = card.get("weights_sha256", str, default=None)
    if digest is not None and not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise CnnlabError(f"{card.where}: weights_sha256 must be 64 hexadecimal digits")
    return digest


def _excluded(card: _Reader) -> dict[str, int]:
    counts = card.get("excluded", dict, default={})
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts.values()):
        raise CnnlabError(f"{card.where}: excluded must map splits to image counts")
    return {str(split): n for split, n in counts.items()}


_MISSING = object()


class _Reader:
    """Typed access to one JSON object, naming the file and field in every error."""

    def __init__(self, values: Any, where: str) -> None:
        if not isinstance(values, dict):
            raise CnnlabError(f"{where}: expected a JSON object, got {type(values).__name__}")
        self.values, self.where = values, where

    def section(self, key: str) -> _Reader:
        return _Reader(self.get(key, dict), f"{self.where} {key}")

    def get(self, key: str, kind: type, *, default: Any = _MISSING, item: type | None = None) -> Any:
        if key not in self.values or self.values[key] is None:
            if default is _MISSING:
                raise CnnlabError(f"{self.where}: the field {key!r} is missing")
            return default
        value = self.values[key]
        if not _is(value, kind) or (item is not None and not all(_is(v, item) for v in value)):
            wanted = f"a list of {item.__name__}" if item else kind.__name__
            raise CnnlabError(f"{self.where}: the field {key!r} must be {wanted}, got {value!r}"[:300])
        return float(value) if kind is float else value


def _is(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def versions() -> dict[str, str]:
    """The library versions a model was saved with."""
    import torch
    import torchvision

    from .. import __version__

    return {"cnnlab": __version__, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "python": platform.python_version()}
