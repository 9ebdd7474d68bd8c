"""The results a run folder holds besides the model, as types: one writer (`to_dict`) and one
reader (`from_dict` / `read`) each, as the model card has. metrics.csv's rows (EpochRow),
results.json (TrainingResults), evaluate's metrics.json (EvaluationMetrics), attack's metrics.json
(AttackMetrics) and the parity in export.json (Fp32Parity, Int8Parity). A figure a result does not
have (no validation split, no top-5 with fewer than 5 classes) is None here, NaN in CSV, null in
JSON."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..base.errors import CnnlabError


def read_json_file(path: Path) -> Any:
    """A result file's parsed JSON; unreadable or malformed is one clear error naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CnnlabError(f"cannot read {path}: {error}") from None


def _typed(cls: type, values: Any, where: str) -> Any:
    """cls.from_dict(values), with a missing or malformed field said in one line."""
    try:
        return cls.from_dict(values)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CnnlabError(f"{where}: not a {cls.__name__} file ({type(error).__name__}: "
                          f"{error})"[:300]) from None


def _finite(value: Any) -> Any:
    """JSON has no NaN: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _none_if_nan(value: Any) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value


@dataclass(frozen=True)
class EpochRow:
    """One row of metrics.csv: an epoch's training and validation figures. The one writer is
    `to_dict` (the CSV row, and the checkpoint's history), the one reader `from_dict`; in the CSV
    a figure the epoch has not (no validation split, no learning rate for a probe) is NaN."""

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float | None  # None: there is no validation split
    val_acc: float | None
    lr: float | None  # the head's rate in the epoch's last step; None for a fitted probe
    seconds: float  # training only, validation excluded
    val_robust_acc: float | None = None  # adversarial training only

    @classmethod
    def measured(cls, epoch: int, train: tuple[float, float], val: tuple[float, float] | None,
                 lr: float | None, seconds: float, val_robust_acc: float | None = None) -> EpochRow:
        """A row of figures as measured, rounded as metrics.csv keeps them."""
        def rounded(value: float | None, digits: int = 6) -> float | None:
            return None if value is None else round(float(value), digits)

        return cls(epoch, rounded(train[0]), rounded(train[1]),
                   rounded(val[0]) if val else None, rounded(val[1]) if val else None,
                   lr, round(seconds, 3), rounded(val_robust_acc))

    @property
    def has_validation(self) -> bool:
        return self.val_acc is not None

    @property
    def score(self) -> float:
        """What picks the best epoch: the validation accuracy, or without a validation split the
        training accuracy."""
        return self.val_acc if self.val_acc is not None else self.train_acc

    def to_dict(self) -> dict[str, float]:
        values = {"epoch": self.epoch, "train_loss": self.train_loss, "train_acc": self.train_acc,
                  "val_loss": _nan_if_none(self.val_loss), "val_acc": _nan_if_none(self.val_acc)}
        if self.val_robust_acc is not None:
            values["val_robust_acc"] = self.val_robust_acc
        return {**values, "lr": _nan_if_none(self.lr), "seconds": self.seconds}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EpochRow:
        """A row as to_dict wrote it (or as csv.DictReader reads it back, as text)."""
        number = {key: _none_if_nan(float(value)) if value not in (None, "") else None
                  for key, value in values.items()}
        return cls(epoch=int(number["epoch"]), train_loss=number["train_loss"],
                   train_acc=number["train_acc"], val_loss=number.get("val_loss"),
                   val_acc=number.get("val_acc"), lr=number.get("lr"),
                   seconds=number.get("seconds") or 0.0,
                   val_robust_acc=number.get("val_robust_acc"))


@dataclass(frozen=True)
class TrainingResults:
    """results.json: how training ended."""

    status: str  # finished | stopped early | diverged
    epochs: int
    best_epoch: int
    best_val_accuracy: float | None
    test_accuracy: float | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingResults:
        return cls(status=str(values["status"]), epochs=int(values["epochs"]),
                   best_epoch=int(values["best_epoch"]),
                   best_val_accuracy=_optional(values.get("best_val_accuracy")),
                   test_accuracy=_optional(values.get("test_accuracy")),
                   seconds=float(values["seconds"]))

    @classmethod
    def read(cls, path: Path) -> TrainingResults:
        return _typed(cls, read_json_file(path), str(path))


def _optional(value: Any) -> float | None:
    return None if value is None else float(value)


def _mean(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return sum(known) / len(known) if known else None


@dataclass(frozen=True)
class ClassMetrics:
    """One class's precision, recall, F1 and support (its images in the split)."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int

    def to_dict(self) -> dict[str, Any]:
        return {"class": self.name, "precision": self.precision, "recall": self.recall,
                "f1": self.f1, "support": self.support}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ClassMetrics:
        return cls(str(values["class"]), float(values["precision"]), float(values["recall"]),
                   float(values["f1"]), int(values["support"]))


@dataclass(frozen=True)
class AveragedMetrics:
    """Precision, recall and F1 averaged over the classes (macro: alike; weighted: by support)."""

    precision: float
    recall: float
    f1: float

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AveragedMetrics:
        return cls(float(values["precision"]), float(values["recall"]), float(values["f1"]))


@dataclass(frozen=True)
class ShiftAccuracy:
    """Accuracy with every image shifted by `shift` pixels (the translation test)."""

    shift: int
    accuracy: float

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ShiftAccuracy:
        return cls(int(values["shift"]), float(values["accuracy"]))


# The precisions evaluate finds a threshold for, and `predict --min-precision` accepts.
TARGET_PRECISIONS = (0.9, 0.95, 0.99)


@dataclass(frozen=True)
class ClassAuc:
    """How well one class's probability ranks the class's images above the others (one class
    against the rest): the area under the ROC curve and the average precision (the area under the
    precision-recall curve as a step sum, as scikit-learn's). None where the split has no image of
    the class, or nothing else."""

    name: str
    auroc: float | None
    average_precision: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"class": self.name, "auroc": self.auroc,
                "average_precision": self.average_precision}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ClassAuc:
        return cls(str(values["class"]), _optional(values.get("auroc")),
                   _optional(values.get("average_precision")))


@dataclass(frozen=True)
class PrecisionThreshold:
    """The lowest probability of a class from which the images given it reach a target precision
    (so the most recall at that precision), measured on the evaluated split."""

    target: float
    threshold: float | None  # None: no threshold reaches the target on this split
    precision: float | None  # the precision measured at the threshold
    recall: float  # the share of the class's images kept (0 where the target is out of reach)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PrecisionThreshold:
        return cls(float(values["target"]), _optional(values.get("threshold")),
                   _optional(values.get("precision")), float(values["recall"]))


@dataclass(frozen=True)
class ClassThresholds:
    """One class's thresholds, one per target precision."""

    name: str
    targets: tuple[PrecisionThreshold, ...]

    def at(self, target: float) -> PrecisionThreshold | None:
        return next((row for row in self.targets if math.isclose(row.target, target)), None)

    def to_dict(self) -> dict[str, Any]:
        return {"class": self.name, "targets": [row.to_dict() for row in self.targets]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ClassThresholds:
        return cls(str(values["class"]),
                   tuple(PrecisionThreshold.from_dict(row) for row in values["targets"]))


@dataclass(frozen=True)
class EvaluationMetrics:
    """evaluate's metrics.json: a run's model measured on one split."""

    run: str
    data: str
    split: str
    images: int
    loss: float
    accuracy: float
    ece: float  # expected calibration error, 15 equal-width bins
    per_class: tuple[ClassMetrics, ...]
    macro_avg: AveragedMetrics
    weighted_avg: AveragedMetrics
    translation: tuple[ShiftAccuracy, ...] = ()
    top5_accuracy: float | None = None  # with 5 classes or more
    per_class_auc: tuple[ClassAuc, ...] = ()  # one class against the rest, by its probability
    thresholds: tuple[ClassThresholds, ...] = ()  # per class, for each of TARGET_PRECISIONS
    # False when the model was fitted on this split's images (the probe refits on val): its
    # figures are then not held-out figures, and every table that shows them says so.
    held_out: bool = True
    # figures later stages add under their own keys, kept as they are (read by their own types)
    extra: dict[str, Any] = field(default_factory=dict)

    KNOWN = ("run", "data", "split", "images", "loss", "accuracy", "ece", "top5_accuracy",
             "per_class", "macro_avg", "weighted_avg", "translation", "per_class_auc",
             "thresholds", "held_out")

    @property
    def macro_auroc(self) -> float | None:
        """The mean AUROC over the classes that have one (scikit-learn's one-vs-rest macro)."""
        return _mean([row.auroc for row in self.per_class_auc])

    @property
    def macro_average_precision(self) -> float | None:
        return _mean([row.average_precision for row in self.per_class_auc])

    def to_dict(self) -> dict[str, Any]:
        values = {"run": self.run, "data": self.data, "split": self.split,
                  "held_out": self.held_out, "images": self.images,
                  "loss": self.loss, "accuracy": self.accuracy, "ece": self.ece}
        if self.top5_accuracy is not None:
            values["top5_accuracy"] = self.top5_accuracy
        values["per_class"] = [row.to_dict() for row in self.per_class]
        values["macro_avg"], values["weighted_avg"] = asdict(self.macro_avg), asdict(self.weighted_avg)
        values["translation"] = [asdict(row) for row in self.translation]
        values["per_class_auc"] = [row.to_dict() for row in self.per_class_auc]
        values["thresholds"] = [row.to_dict() for row in self.thresholds]
        return _finite({**values, **self.extra})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EvaluationMetrics:
        return cls(run=str(values["run"]), data=str(values["data"]), split=str(values["split"]),
                   images=int(values["images"]), loss=float(values["loss"]),
                   accuracy=float(values["accuracy"]), ece=float(values["ece"]),
                   per_class=tuple(ClassMetrics.from_dict(row) for row in values["per_class"]),
                   macro_avg=AveragedMetrics.from_dict(values["macro_avg"]),
                   weighted_avg=AveragedMetrics.from_dict(values["weighted_avg"]),
                   translation=tuple(ShiftAccuracy.from_dict(row)
                                     for row in values.get("translation") or []),
                   top5_accuracy=_optional(values.get("top5_accuracy")),
                   per_class_auc=tuple(ClassAuc.from_dict(row)
                                       for row in values.get("per_class_auc") or []),
                   thresholds=tuple(ClassThresholds.from_dict(row)
                                    for row in values.get("thresholds") or []),
                   held_out=bool(values.get("held_out", True)),
                   extra={k: v for k, v in values.items() if k not in cls.KNOWN})

    @classmethod
    def read(cls, path: Path) -> EvaluationMetrics:
        return _typed(cls, read_json_file(path), str(path))


@dataclass(frozen=True)
class RobustAccuracy:
    """One epsilon (pixel units in [0, 1]): the images correct on both the clean and the attacked
    input (robust), and on the attacked input alone (adversarial)."""

    eps: float
    robust_accuracy: float
    adversarial_accuracy: float
    step_size: float | None = None  # PGD only

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        if self.step_size is None:
            del values["step_size"]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RobustAccuracy:
        return cls(float(values["eps"]), float(values["robust_accuracy"]),
                   float(values.get("adversarial_accuracy", values["robust_accuracy"])),
                   _optional(values.get("step_size")))


@dataclass(frozen=True)
class AttackMetrics:
    """attack's metrics.json: robust accuracy against one attack, for each epsilon."""

    run: str
    data: str
    split: str
    images: int
    method: str  # fgsm | pgd
    norm: str  # linf | l2
    clean_accuracy: float
    results: tuple[RobustAccuracy, ...]
    seed: int
    steps: int | None = None  # PGD only
    random_start: bool | None = None  # PGD only
    eps_units: str = "pixels in [0, 1], before normalization"

    def fooled(self, row: RobustAccuracy) -> float | None:
        """The share of correctly classified images the attack turns wrong."""
        return 1 - row.robust_accuracy / self.clean_accuracy if self.clean_accuracy else None

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["results"] = [row.to_dict() for row in self.results]
        if self.method != "pgd":
            del values["steps"], values["random_start"]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AttackMetrics:
        return cls(run=str(values["run"]), data=str(values["data"]), split=str(values["split"]),
                   images=int(values["images"]), method=str(values["method"]),
                   norm=str(values["norm"]), clean_accuracy=float(values["clean_accuracy"]),
                   results=tuple(RobustAccuracy.from_dict(row) for row in values["results"]),
                   seed=int(values.get("seed", 0)), steps=values.get("steps"),
                   random_start=values.get("random_start"),
                   eps_units=str(values.get("eps_units", cls.eps_units)))

    @classmethod
    def read(cls, path: Path) -> AttackMetrics:
        return _typed(cls, read_json_file(path), str(path))


@dataclass(frozen=True)
class Fp32Parity:
    """The fp32 ONNX graph against eager PyTorch on the same images."""

    images: int
    max_abs_logit_difference: float
    top1_agreement: float
    disagreements_beyond_near_ties: int
    eager_accuracy: float
    onnx_accuracy: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Fp32Parity:
        return cls(int(values["images"]), float(values["max_abs_logit_difference"]),
                   float(values["top1_agreement"]),
                   int(values.get("disagreements_beyond_near_ties", 0)),
                   float(values["eager_accuracy"]), float(values["onnx_accuracy"]),
                   bool(values.get("passed", True)))


@dataclass(frozen=True)
class Int8Parity:
    """The int8 ONNX graph against the fp32 one, and the calibration that made it."""

    images: int
    fp32_accuracy: float
    int8_accuracy: float
    accuracy_difference: float  # int8 - fp32
    top1_agreement: float
    passed: bool
    reduce_range: bool | None = None
    calibration_images: int | None = None
    candidates: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Int8Parity:
        return cls(int(values["images"]), float(values["fp32_accuracy"]),
                   float(values["int8_accuracy"]), float(values["accuracy_difference"]),
                   float(values["top1_agreement"]), bool(values.get("passed", True)),
                   values.get("reduce_range"), values.get("calibration_images"),
                   dict(values.get("candidates") or {}))


@dataclass(frozen=True)
class ExportParity:
    """What export measured, as export.json's "parity" holds it: fp32 always, int8 with --int8."""

    fp32: Fp32Parity | None = None
    int8: Int8Parity | None = None

    @property
    def passed(self) -> bool:
        return all(check.passed for check in (self.fp32, self.int8) if check is not None)

    def of(self, precision: str) -> Fp32Parity | Int8Parity | None:
        return {"fp32": self.fp32, "int8": self.int8}.get(precision)

    def to_dict(self) -> dict[str, Any]:
        return {name: check.to_dict() for name, check in (("fp32", self.fp32), ("int8", self.int8))
                if check is not None}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExportParity:
        return cls(Fp32Parity.from_dict(values["fp32"]) if values.get("fp32") else None,
                   Int8Parity.from_dict(values["int8"]) if values.get("int8") else None)


@dataclass(frozen=True)
class ScoreQuality:
    """One unknown-image score, known (positive) against unknown images: evaluate --unknown."""

    score: str
    auroc: float
    fpr_at_95_tpr: float


@dataclass(frozen=True)
class OpenSetResult:
    """evaluate --unknown's unknown.json: every score, and the run's own detector."""

    known: int  # images of the run's test split
    unknown: int  # images of the other data
    scores: tuple[ScoreQuality, ...]
    detector: str | None  # the run's own score, where it has one
    unknown_refused: float | None  # with the run's own threshold: unknown images called unknown
    known_kept: float | None  # ... and known images kept

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> OpenSetResult:
        return cls(int(values["known"]), int(values["unknown"]),
                   tuple(ScoreQuality(str(row["score"]), float(row["auroc"]),
                                      float(row["fpr_at_95_tpr"])) for row in values["scores"]),
                   values.get("detector"), _optional(values.get("unknown_refused")),
                   _optional(values.get("known_kept")))

    @classmethod
    def read(cls, path: Path) -> OpenSetResult:
        return _typed(cls, read_json_file(path), str(path))
