"""model.json as a type: what a trained model needs to be rebuilt and fed, in one frozen dataclass.

As timm's PretrainedCfg, it travels with the weights (model.safetensors) and is the contract between
training and every later stage (predict, evaluate, explain, attack, export, serve, report). It has one
writer (`ModelCard.to_json`) and one reader (`ModelCard.read`, base.typed's reader driven by the
dataclasses' type hints), which names a missing or malformed field in one line. Nothing else reads
model.json by string keys.
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
from ..base.typed import json_field, read_typed, to_json_dict
from ..base.version import VERSION
from ..config.common import DEFAULT_INTERPOLATION, INTERPOLATIONS
from .results import ExportParity
from .unknown_scores import UNKNOWN_SCORES

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

    def check(self, where: str) -> None:
        if self.channels not in (1, 3) or self.height < 1 or self.width < 1:
            raise CnnlabError(f"{where}: expected 1 or 3 channels and a positive size, got "
                              f"{self.shape}")


# crop_pct scales the image to cover size / crop_pct before the centre crop: timm's models use
# 0.8..1.0; below MIN_CROP_PCT the resize would be 1 / crop_pct times the input per side.
MIN_CROP_PCT = 0.05


@dataclass(frozen=True)
class Preprocessing:
    """How any image becomes the model's input (data.images does it, the same way everywhere).

    The image is converted to `channels`, scaled so it covers (height, width) / crop_pct with the
    `interpolation` filter, its centre (height, width) cut out, and its pixels divided by 255.
    `mean` and `std` are applied inside the model (Classifier), so exports and attacks take pixels.
    """

    interpolation: str = DEFAULT_INTERPOLATION  # one of config.common.INTERPOLATIONS
    crop_pct: float = 1.0
    mean: tuple[float, ...] = json_field((), required=True)
    std: tuple[float, ...] = json_field((), required=True)
    scale: str = "pixels / 255"
    resize: str = "cover then center crop"

    def check(self, where: str) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise CnnlabError(f"{where}: unknown interpolation {self.interpolation!r}"[:200] +
                              f" (choose from {', '.join(INTERPOLATIONS)})")
        if not MIN_CROP_PCT <= self.crop_pct <= 1:
            raise CnnlabError(f"{where}: crop_pct must be a number >= {MIN_CROP_PCT} and <= 1, got "
                              f"{self.crop_pct!r}")
        if not all(math.isfinite(v) for v in self.mean + self.std) or not all(s > 0 for s in self.std):
            raise CnnlabError(f"{where}: mean must be finite and std positive")


@dataclass(frozen=True)
class Calibration:
    """Temperature scaling fitted on the validation split after training (Guo et al., 2017): the
    probabilities are softmax(logits / temperature); the ECE on that split before and after."""

    temperature: float
    ece_before: float
    ece_after: float
    images: int
    # why no temperature was kept (too few images, a fit that made the ECE worse): it is then 1
    declined: str | None = json_field(None, omit_none=True)

    def check(self, where: str) -> None:
        if not self.temperature > 0:
            raise CnnlabError(f"{where}: the temperature must be positive")


@dataclass(frozen=True)
class UnknownDetector:
    """How the model says "none of my classes": a score (higher: more like the training images)
    and the threshold below which an image is unknown, set on the validation split so that `keep`
    of the known images pass. A feature-based score keeps its statistics in `file`."""

    score: str  # a name of run.unknown_scores' table
    threshold: float
    keep: float
    file: str | None = None  # e.g. unknown.safetensors in the run folder

    def check(self, where: str) -> None:
        if self.score not in UNKNOWN_SCORES:
            raise CnnlabError(f"{where}: unknown score {self.score!r} (this cnnlab knows "
                              f"{', '.join(UNKNOWN_SCORES)})")
        if self.file is not None and Path(self.file).name != self.file:
            raise CnnlabError(f"{where}: 'file' must name a file in the run folder")


@dataclass(frozen=True)
class ModelCard:
    """Everything model.json says about a trained model."""

    JSON_FORMAT = FORMAT

    name: str  # the network's name (a registry name, "custom", or timm:NAME)
    # what create_model builds: a layer spec or timm:NAME (the file keeps room for more than a spec)
    architecture: str = json_field(key=("architecture", "spec"))
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
    # Structured pruning: the share of channels removed from the network `architecture` names.
    # The weights file holds the shapes left, and the network is given them before loading.
    pruned: float | None = json_field(None, omit_none=True)
    teacher: str | None = json_field(None, omit_none=True)  # the run it was distilled from

    @property
    def temperature(self) -> float:
        return self.calibration.temperature if self.calibration is not None else 1.0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def replace(self, **changes: Any) -> ModelCard:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return to_json_dict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, values: Any, where: str = "model.json") -> ModelCard:
        """Check and convert a parsed model.json; a bad field is one clear CnnlabError."""
        return read_typed(cls, values, where)

    def check(self, where: str) -> None:
        """What the types do not say: two or more distinct classes, one mean and std per input
        channel, a weights digest of 64 hex digits, image counts that are counts."""
        if len(self.class_names) < 2:
            raise CnnlabError(f"{where}: class_names must name two or more classes")
        if len(set(self.class_names)) != len(self.class_names):
            repeated = sorted({n for n in self.class_names if self.class_names.count(n) > 1})
            raise CnnlabError(f"{where}: class_names name a class twice ({repeated[:3]})"[:300])
        channels = self.input.channels
        if len(self.preprocessing.mean) != channels or len(self.preprocessing.std) != channels:
            raise CnnlabError(f"{where}: preprocessing mean and std need one value per input "
                              f"channel ({channels})")
        if self.weights_sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", self.weights_sha256):
            raise CnnlabError(f"{where}: weights_sha256 must be 64 hexadecimal digits")
        if any(n < 0 for n in self.excluded.values()):
            raise CnnlabError(f"{where}: excluded must map splits to image counts")
        if self.pruned is not None and not 0 < self.pruned < 1:
            raise CnnlabError(f"{where}: pruned must be a share of channels between 0 and 1")

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

    JSON_FORMAT = EXPORT_FORMAT

    card: ModelCard = json_field(key="model")
    files: dict[str, str]  # precision ("fp32", "int8") -> file name in the export folder
    sha256: dict[str, str] = field(default_factory=dict)  # file name -> its SHA-256 (none: old export)
    input_name: str = json_field("pixels", key=("input", "name"), required=True)
    output_name: str = json_field("logits", key=("output", "name"), required=True)
    output: str = json_field("logits", key=("output", "kind"), required=True)  # or "log_probabilities"
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
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CnnlabError(f"cannot read {path}: {error}") from None
        return read_typed(cls, values, str(path))

    def check(self, where: str) -> None:
        if not self.files or not all(Path(name).name == name for name in self.files.values()):
            raise CnnlabError(f"{where}: 'files' must name model files inside the export folder")


def versions() -> dict[str, str]:
    """The library versions a model was saved with."""
    import torch
    import torchvision

    return {"cnnlab": VERSION, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "python": platform.python_version()}
