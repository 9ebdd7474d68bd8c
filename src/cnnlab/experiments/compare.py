"""`cnnlab compare RUN RUN [...]`: runs side by side, and whether their difference is real.

Settings (only those that differ), final metrics, the learning curves overlaid, per-class accuracy
from each run's RUN/evaluate/, and, for runs scored on the same test images, how often they
disagree and McNemar's exact test. Writes compare.json and curves.png into the results folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..base.errors import CnnlabError
from ..base.fileio import atomic_write_json, is_dir
from ..base.settings import resolve
from ..evaluate import PREDICTIONS, PredictionRow, read_predictions
from ..run.results import EvaluationMetrics
from .mcnemar import mcnemar_exact
from .records import WEIGHTS, RunRecord, is_run_folder, read_run, setting_label
from .settings import CompareSettings
from .table import NOT_COMPARED, differing_settings

EVALUATE, EVALUATE_METRICS = "evaluate", "metrics.json"  # as evaluate writes them
COMPARE_FILE, FIGURE = "compare.json", "curves.png"
SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class SplitScores:
    """A run's RUN/evaluate/: its test split as evaluate scored it."""

    data: str
    split: str
    accuracy: float
    class_accuracy: dict[str, float]  # per class: the share of its images predicted right (recall)
    predictions: tuple[PredictionRow, ...]  # empty where evaluate wrote none (an older cnnlab)

    @classmethod
    def read(cls, folder: Path) -> SplitScores:
        metrics = EvaluationMetrics.read(folder / EVALUATE_METRICS)
        predictions = folder / PREDICTIONS
        return cls(metrics.data, metrics.split, metrics.accuracy,
                   {row.name: row.recall for row in metrics.per_class},
                   tuple(read_predictions(predictions)) if predictions.is_file() else ())


@dataclass(frozen=True)
class PairedTest:
    """Two runs on the same test images: who got which right, and McNemar's exact test."""

    first: str
    second: str
    images: int
    both_right: int
    only_first: int  # right by the first run alone
    only_second: int
    both_wrong: int
    disagree: int  # images the two runs give different classes
    p_value: float

    @property
    def significant(self) -> bool:
        return self.p_value < SIGNIFICANCE


@dataclass(frozen=True)
class Comparison:
    folder: Path
    names: tuple[str, ...]
    runs: tuple[RunRecord, ...]
    settings: tuple[str, ...]  # dotted keys of the settings that differ
    scores: tuple[SplitScores | None, ...]
    pairs: tuple[PairedTest, ...]
    notes: tuple[str, ...]
    evaluated: tuple[Path, ...] = ()  # the runs this comparison evaluated first
    # what `cnnlab compress` measured of each run (a teacher, or a compressed run), else None
    costs: tuple[Any, ...] = ()

    @property
    def figure(self) -> Path:
        return self.folder / FIGURE

    def class_names(self) -> list[str]:
        return list(dict.fromkeys(name for s in self.scores if s for name in s.class_accuracy))

    def to_dict(self) -> dict[str, Any]:
        """What compare.json holds."""
        return {
            "runs": [{"name": name, "path": str(run.path), "data": run.data, "model": run.model,
                      "status": run.status, "epochs": run.epochs,
                      "best_val_accuracy": run.best_val_accuracy, "test_accuracy": run.test_accuracy,
                      "seconds": run.seconds,
                      "evaluated": {"data": s.data, "split": s.split, "accuracy": s.accuracy}
                      if s else None}
                     for name, run, s in zip(self.names, self.runs, self.scores, strict=True)],
            "settings": {setting_label(key): [run.settings.get(key) for run in self.runs]
                         for key in self.settings},
            "class_accuracy": {name: [s.class_accuracy.get(name) if s else None for s in self.scores]
                               for name in self.class_names()},
            "pairs": [asdict(pair) for pair in self.pairs],
            "cost": [asdict(cost) if cost is not None else None for cost in self.costs],
            "notes": list(self.notes),
            "figure": FIGURE,
        }


def pair(first: str, second: str, a: Sequence[PredictionRow],
         b: Sequence[PredictionRow]) -> PairedTest:
    """The 2x2 table of right and wrong over the same images, and its exact test."""
    right = [(x.correct, y.correct) for x, y in zip(a, b, strict=True)]
    only_first, only_second = right.count((True, False)), right.count((False, True))
    return PairedTest(first, second, len(right), right.count((True, True)), only_first, only_second,
                      right.count((False, False)),
                      sum(x.predicted != y.predicted for x, y in zip(a, b, strict=True)),
                      mcnemar_exact(only_first, only_second))


def other_test_set(a: SplitScores, b: SplitScores) -> str | None:
    """Why two runs were not scored on the same test images; None when they were."""
    if (a.data, a.split) != (b.data, b.split):
        return f"{a.data} {a.split} against {b.data} {b.split}"
    if len(a.predictions) != len(b.predictions):
        return f"{len(a.predictions)} against {len(b.predictions)} images"
    if any((x.index, x.file, x.true) != (y.index, y.file, y.true)
           for x, y in zip(a.predictions, b.predictions, strict=True)):
        return "the images or their labels differ (another split of the data?)"
    return None


def run_names(paths: Sequence[Path]) -> list[str]:
    """Folder names, with the parent's where two are alike (two sweeps' trial-1)."""
    names = [path.name for path in paths]
    return [f"{path.parent.name}/{path.name}" if names.count(path.name) > 1 else path.name
            for path in paths]


def default_folder(paths: Sequence[Path], names: Sequence[str]) -> Path:
    """compare-A-B beside the first run: runs/compare-A-B for runs in runs/."""
    shown = [re.sub(r"[^A-Za-z0-9._]+", "-", name) for name in names[:3]]
    more = f"-and-{len(names) - 3}-more" if len(names) > 3 else ""
    return paths[0].parent / f"compare-{'-'.join(shown)}{more}"


def check_runs(runs: Sequence[str | Path]) -> list[Path]:
    paths = [Path(run) for run in runs]
    if len(paths) < 2:
        raise CnnlabError(f"compare needs two or more run folders, got {len(paths)}: "
                          f"cnnlab compare RUN RUN [RUN ...]")
    for path in paths:
        if not is_dir(path) or not is_run_folder(path):
            raise CnnlabError(f"{path} is not a run folder (no metrics.csv, results.json or "
                              f"model that training writes); list the runs with `cnnlab runs`")
    seen = [path.resolve() for path in paths]
    repeated = next((p for p, r in zip(paths, seen, strict=True) if seen.count(r) > 1), None)
    if repeated is not None:
        raise CnnlabError(f"{repeated} is named twice; compare different runs")
    return paths


def needs_evaluation(run: Path) -> bool:
    """No RUN/evaluate/ with per-image predictions, or one older than the weights it scored."""
    metrics, predictions = run / EVALUATE / EVALUATE_METRICS, run / EVALUATE / PREDICTIONS
    if not metrics.is_file() or not predictions.is_file():
        return True
    weights = run / WEIGHTS
    return weights.is_file() and weights.stat().st_mtime > metrics.stat().st_mtime


def evaluation_plan(paths: Sequence[Path]) -> tuple[list[Path], list[str]]:
    """The trained runs that lack a current RUN/evaluate/ (to evaluate first, as `cnnlab
    evaluate RUN` does), and notes on those that cannot be evaluated."""
    todo, notes = [], []
    for path in paths:
        if not needs_evaluation(path):
            continue
        if (path / WEIGHTS).is_file():
            todo.append(path)
        else:
            notes.append(f"{path}: no trained model to evaluate")
    for path in todo:  # before any is evaluated: a comparison refused halfway wastes the others'
        check_evaluation_writable(path)
    return todo, notes


def check_evaluation_writable(run: Path) -> None:
    """Refuse in one line a run whose RUN/evaluate/ cannot be written: a read-only copy of a
    run, or one where a file stands in evaluate/'s place."""
    folder = run / EVALUATE
    if folder.exists() and not folder.is_dir():
        reason = f"{folder} is a file, not a folder"
    elif not os.access(folder if folder.exists() else run, os.W_OK | os.X_OK):
        reason = f"{folder if folder.exists() else run} is not writable"
    else:
        return
    raise CnnlabError(f"cannot evaluate {run} first, as compare does for a run without a current "
                      f"{EVALUATE}/: {reason}; compare it as it is with --no-evaluate, or copy "
                      f"the run somewhere writable")


def _scores(paths: Sequence[Path], notes: list[str]) -> list[SplitScores | None]:
    scores: list[SplitScores | None] = []
    for path in paths:
        folder = path / EVALUATE
        if not (folder / EVALUATE_METRICS).is_file():
            notes.append(f"{path}: not evaluated; per-class accuracy and the paired test need "
                         f"`cnnlab evaluate {path}`")
            scores.append(None)
            continue
        scores.append(SplitScores.read(folder))
        if not scores[-1].predictions:
            notes.append(f"{path}: evaluated without per-image predictions; the paired test needs "
                         f"`cnnlab evaluate {path}` again")
    return scores


def _pairs(names: Sequence[str], scores: Sequence[SplitScores | None],
           notes: list[str]) -> list[PairedTest]:
    pairs = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            a, b = scores[i], scores[j]
            if not (a and b and a.predictions and b.predictions):
                continue
            reason = other_test_set(a, b)
            if reason:
                notes.append(f"{names[i]} and {names[j]}: not the same test images ({reason}); "
                             f"no paired test")
            else:
                pairs.append(pair(names[i], names[j], a.predictions, b.predictions))
    return pairs


def compare_runs(*runs: str | Path, settings: CompareSettings | None = None,
                 evaluated: Sequence[Path] = (), notes: Sequence[str] = (),
                 **options: Any) -> Comparison:
    """Compare two or more run folders, as they are, and write compare.json and curves.png
    (cnnlab.compare first evaluates the runs that need it).

    Args:
        runs: the run folders.
        settings: CompareSettings; `options` override its fields by name, e.g. out="runs/compare".
        evaluated, notes: the runs evaluated first, and what was said of those that could not be.
    """
    settings = resolve(CompareSettings, settings, options)
    paths = check_runs(runs)
    names = run_names(paths)
    notes = list(notes)
    records = [read_run(path) for path in paths]
    notes += [f"{record.path}: {record.problem}" for record in records if record.problem]
    scores = _scores(paths, notes)
    pairs = _pairs(names, scores, notes)
    folder = Path(settings.out) if settings.out else default_folder(paths, names)
    comparison = Comparison(folder, tuple(names), tuple(records),
                            differing_settings(records, NOT_COMPARED), tuple(scores), tuple(pairs),
                            tuple(notes), tuple(evaluated), tuple(compressed_cost(p) for p in paths))
    _write(comparison)
    return comparison


def compressed_cost(run: Path) -> Any:
    """The row `cnnlab compress` measured for this run: a compressed run's chosen one, or a
    teacher's own row; None where it was not compressed."""
    from ..compress import read_compression

    if (run / "compress.json").is_file():
        record = read_compression(run)
        return record.row(record.chosen)
    if (run / "compress" / "compress.json").is_file():
        return read_compression(run).teacher_row
    return None


def _write(comparison: Comparison) -> None:
    from . import figures as plots  # matplotlib: only when a figure is drawn

    comparison.folder.mkdir(parents=True, exist_ok=True)
    plots.compared_curves([(name, [row.to_dict() for row in run.history])
                           for name, run in zip(comparison.names, comparison.runs, strict=True)],
                          comparison.figure)
    atomic_write_json(comparison.folder / COMPARE_FILE, comparison.to_dict())
