"""When a prediction is "unknown": its top class's probability below a floor, one for every class
(`predict --min-prob X`) or each class's own, the threshold that gave the class a target precision
in the run's evaluation (`predict --min-precision 0.95`).

Thresholds chosen on the test split and then judged on it flatter themselves; the validation
split's evaluation (`cnnlab evaluate RUN --split val`) is read first for that reason. A threshold
is a probability, so it holds only for the weights and temperature it was measured with: an
evaluation of others (`cnnlab calibrate` again, new weights), or one that does not say, is refused.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..base.errors import CnnlabError
from ..run.contract import PRETRAINED_PREFIX, ModelCard
from ..run.prediction import Prediction
from ..run.results import TARGET_PRECISIONS, EvaluationMetrics, MeasuredWith
from .settings import PredictSettings

log = logging.getLogger("cnnlab")

# Where the thresholds are read from, in order of preference.
EVALUATIONS = ("evaluate-val", "evaluate")


@dataclass(frozen=True)
class MinProbability:
    """A floor on the top class's probability, per class index; `source` says where it came from."""

    floors: tuple[float, ...]
    source: str

    def accepts(self, prediction: Prediction) -> bool:
        top = prediction.top[0]
        return top.probability >= self.floors[top.index]

    def apply(self, predictions: Sequence[Prediction]) -> list[Prediction]:
        return [replace(p, accepted=self.accepts(p)) for p in predictions]


def _evaluation(run: Path) -> tuple[EvaluationMetrics, Path]:
    for name in EVALUATIONS:
        path = run / name / "metrics.json"
        if path.is_file():
            return EvaluationMetrics.read(path), path
    raise CnnlabError(f"--min-precision reads the thresholds of the run's evaluation, and {run} "
                      f"has none yet: run `cnnlab evaluate {run} --split val` (or on its test "
                      f"split, `cnnlab evaluate {run}`) first")


def _changes(then: MeasuredWith, now: MeasuredWith) -> list[str]:
    changes = []
    if then.weights_sha256 != now.weights_sha256:
        changes.append("other weights")
    if not math.isclose(then.temperature, now.temperature, rel_tol=1e-9):
        changes.append(f"temperature {then.temperature:.6g} (the run's is now "
                       f"{now.temperature:.6g})")
    if then.flip_tta != now.flip_tta:
        changes.append(f"flip TTA {'on' if then.flip_tta else 'off'}")
    return changes


def _check_measured_with(metrics: EvaluationMetrics, path: Path, run: Path,
                         card: ModelCard) -> None:
    """Thresholds of another calibration or other weights would gate on probabilities they were
    not measured on: refused, with the command that measures them again."""
    again = f"cnnlab evaluate {run}" + ("" if metrics.split == "test" else f" --split {metrics.split}")
    if metrics.measured_with is None:
        raise CnnlabError(f"{path} does not say which weights and temperature its thresholds were "
                          f"measured with (written by an older cnnlab); measure them again: {again}")
    changes = _changes(metrics.measured_with, MeasuredWith.of(card))
    if changes:
        raise CnnlabError(f"{path}: its thresholds were measured with {' and '.join(changes)}; "
                          f"measure them again: {again}")


def _precision_floors(run: Path, target: float, card: ModelCard) -> MinProbability:
    if not any(math.isclose(target, t) for t in TARGET_PRECISIONS):
        raise CnnlabError(f"--min-precision must be one of {', '.join(map(str, TARGET_PRECISIONS))} "
                          f"(the precisions evaluate finds thresholds for), got {target:g}")
    metrics, path = _evaluation(run)
    _check_measured_with(metrics, path, run, card)
    class_names = card.class_names
    by_class = {row.name: row.at(target) for row in metrics.thresholds}
    if not by_class:
        raise CnnlabError(f"{path} has no thresholds (written by an older cnnlab); evaluate the "
                          f"run again: cnnlab evaluate {run} --split val")
    missing = [name for name in class_names if by_class.get(name) is None]
    if missing:
        raise CnnlabError(f"{path} has no threshold for the classes {missing[:5]}; evaluate the "
                          f"run again")
    unreached = [name for name in class_names if by_class[name].threshold is None]
    if unreached:
        log.warning("no threshold reached precision %g for %s on %s: every prediction of %s is "
                    "unknown", target, ", ".join(unreached[:10]), path.parent.name,
                    "them" if len(unreached) > 1 else "it")
    floors = tuple(math.inf if by_class[name].threshold is None else by_class[name].threshold
                   for name in class_names)
    return MinProbability(floors, f"precision {target:g} per class, from {path}")


def min_probability(run: str | Path, settings: PredictSettings,
                    card: ModelCard) -> MinProbability | None:
    """The floor the settings ask for (None: every prediction stands) for the model of `card`."""
    class_names = card.class_names
    if settings.min_prob is not None and settings.min_precision is not None:
        raise CnnlabError("give --min-prob (one floor for every class) or --min-precision (each "
                          "class's own threshold), not both")
    if settings.min_prob is not None:
        return MinProbability((settings.min_prob,) * len(class_names),
                              f"probability {settings.min_prob:g}")
    if settings.min_precision is None:
        return None
    if str(run).startswith(PRETRAINED_PREFIX):
        raise CnnlabError("--min-precision needs a run folder evaluated by cnnlab evaluate; for "
                          "a pretrained model use --min-prob")
    return _precision_floors(Path(run), settings.min_precision, card)
