"""The results a run folder holds besides the model, as types: one writer (`to_dict`) and one
reader each (`read`: base.typed's, driven by the type hints), as the model card has. metrics.csv's
rows (EpochRow, read from text by `from_dict`),
results.json (TrainingResults), evaluate's metrics.json (EvaluationMetrics), attack's metrics.json
(AttackMetrics) and the parity in export.json (Fp32Parity, Int8Parity). A figure a result does not
have (no validation split, no top-5 with fewer than 5 classes) is None here, NaN in CSV, null in
JSON."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..base.fileio import read_json_file
from ..base.typed import json_field, read_typed, to_json_dict


def _finite(value: Any) -> Any:
    """JSON has no NaN: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


SHARE = (0, 1)  # an accuracy, a precision, a recall: a share of images
NON_NEGATIVE = (0, None)  # a loss, a rate, a count
SECONDS = (0, 1e10)  # no run lasts three centuries: a larger figure is a damaged file


def _none_if_nan(value: Any) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value


@dataclass(frozen=True)
class EpochRow:
    """One row of metrics.csv: an epoch's training and validation figures. The one writer is
    `to_dict` (the CSV row, and the checkpoint's history), the one reader `from_dict`; in the CSV
    a figure the epoch has not (no validation split, no learning rate for a probe) is NaN."""

    epoch: int = json_field(within=NON_NEGATIVE)
    train_loss: float = json_field(within=NON_NEGATIVE)
    train_acc: float = json_field(within=SHARE)
    val_loss: float | None = json_field(within=NON_NEGATIVE)  # None: there is no validation split
    val_acc: float | None = json_field(within=SHARE)
    # the head's rate in the epoch's last step; None for a fitted probe
    lr: float | None = json_field(within=NON_NEGATIVE)
    seconds: float = json_field(within=SECONDS)  # training only, validation excluded
    val_robust_acc: float | None = json_field(None, within=SHARE)  # adversarial training only

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
    epochs: int = json_field(within=NON_NEGATIVE)
    best_epoch: int = json_field(within=NON_NEGATIVE)
    best_val_accuracy: float | None = json_field(within=SHARE)
    test_accuracy: float | None = json_field(within=SHARE)
    seconds: float = json_field(within=SECONDS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def read(cls, path: Path) -> TrainingResults:
        return read_typed(cls, read_json_file(path), str(path))


def _mean(values: list[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return sum(known) / len(known) if known else None


@dataclass(frozen=True)
class ClassMetrics:
    """One class's precision, recall, F1 and support (its images in the split)."""

    name: str = json_field(key="class")
    precision: float = json_field(within=SHARE)
    recall: float = json_field(within=SHARE)
    f1: float = json_field(within=SHARE)
    support: int = json_field(within=NON_NEGATIVE)

    def to_dict(self) -> dict[str, Any]:
        return to_json_dict(self)


@dataclass(frozen=True)
class AveragedMetrics:
    """Precision, recall and F1 averaged over the classes (macro: alike; weighted: by support)."""

    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class ShiftAccuracy:
    """Accuracy with every image shifted by `shift` pixels (the translation test)."""

    shift: int
    accuracy: float


# The precisions evaluate finds a threshold for, and `predict --min-precision` accepts.
TARGET_PRECISIONS = (0.9, 0.95, 0.99)


@dataclass(frozen=True)
class ClassAuc:
    """How well one class's probability ranks the class's images above the others (one class
    against the rest): the area under the ROC curve and the average precision (the area under the
    precision-recall curve as a step sum, as scikit-learn's). None where the split has no image of
    the class, or nothing else."""

    name: str = json_field(key="class")
    auroc: float | None
    average_precision: float | None

    def to_dict(self) -> dict[str, Any]:
        return to_json_dict(self)


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


@dataclass(frozen=True)
class ClassThresholds:
    """One class's thresholds, one per target precision."""

    name: str = json_field(key="class")
    targets: tuple[PrecisionThreshold, ...]

    def at(self, target: float) -> PrecisionThreshold | None:
        return next((row for row in self.targets if math.isclose(row.target, target)), None)

    def to_dict(self) -> dict[str, Any]:
        return to_json_dict(self)


@dataclass(frozen=True)
class MeasuredWith:
    """What made the probabilities an evaluation measured: the weights (the SHA-256 that
    model.json binds them by), the temperature and flip TTA. Thresholds set on those
    probabilities hold for this model alone: a new calibration or new weights need new ones."""

    weights_sha256: str | None
    temperature: float
    flip_tta: bool

    @classmethod
    def of(cls, card: Any) -> MeasuredWith:
        """The binding of a run.contract.ModelCard (not imported: it imports this module)."""
        return cls(card.weights_sha256, card.temperature, card.flip_tta)


@dataclass(frozen=True)
class EvaluationMetrics:
    """evaluate's metrics.json: a run's model measured on one split."""

    run: str
    data: str
    split: str
    images: int
    loss: float
    accuracy: float = json_field(within=SHARE)
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
    measured_with: MeasuredWith | None = None  # None: written by a cnnlab that did not record it
    # figures later stages add under their own keys, kept as they are (read by their own types)
    extra: dict[str, Any] = json_field(factory=dict, extra=True)

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
        if self.measured_with is not None:
            values["measured_with"] = asdict(self.measured_with)
        return _finite({**values, **self.extra})

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "metrics.json") -> EvaluationMetrics:
        return read_typed(cls, values, where)

    @classmethod
    def read(cls, path: Path) -> EvaluationMetrics:
        return read_typed(cls, read_json_file(path), str(path))


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

    @staticmethod
    def from_older(values: dict[str, Any]) -> dict[str, Any]:
        """Older files lack the adversarial accuracy: the robust accuracy stands in for it."""
        return {"adversarial_accuracy": values.get("robust_accuracy"), **values}


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
    seed: int = json_field(absent=0)  # older files lack it
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
    def read(cls, path: Path) -> AttackMetrics:
        return read_typed(cls, read_json_file(path), str(path))


@dataclass(frozen=True)
class Fp32Parity:
    """The fp32 ONNX graph against eager PyTorch on the same images."""

    images: int
    max_abs_logit_difference: float
    top1_agreement: float
    disagreements_beyond_near_ties: int = json_field(absent=0)  # older files lack it
    eager_accuracy: float
    onnx_accuracy: float
    passed: bool = json_field(absent=True)  # older files lack it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Int8Parity:
    """The int8 ONNX graph against the fp32 one, and the calibration that made it."""

    images: int
    fp32_accuracy: float
    int8_accuracy: float
    accuracy_difference: float  # int8 - fp32
    top1_agreement: float
    passed: bool = json_field(absent=True)
    reduce_range: bool | None = None
    calibration_images: int | None = None
    candidates: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    def read(cls, path: Path) -> OpenSetResult:
        return read_typed(cls, read_json_file(path), str(path))
