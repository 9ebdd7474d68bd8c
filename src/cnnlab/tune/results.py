"""What a sweep leaves besides its trials' run folders: trials.csv, best.yaml, the importance of
each setting and the figures, all from the study as the storage holds it (every worker's trials)."""

from __future__ import annotations

import csv
import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..base.errors import CnnlabError
from ..base.fileio import atomic_write_text
from ..config import apply_overrides
from .space import SearchSpace
from .study import FAILURE, INTERRUPTED, METRIC, RUN, SECONDS, SURPLUS, base_config, has_outcome

TRIALS_CSV, BEST_YAML = "trials.csv", "best.yaml"
FIGURES = ("history.png", "slices.png", "importance.png", "intermediate.png")


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the table shows it."""

    number: int
    state: str  # complete | pruned | failed | interrupted | running
    value: float | None  # the metric: the best epoch's, or the last reported before pruning
    params: dict[str, Any]
    epochs: int  # epochs reported
    seconds: float | None
    run: str | None  # its run folder
    reason: str  # why it failed, was pruned or interrupted; "" otherwise

    @classmethod
    def of(cls, trial: FrozenTrial, recorded_as: int | None = None) -> TrialRecord:
        """`recorded_as`: the trial that holds this one's result, recorded from its run folder."""
        steps = trial.intermediate_values
        last = steps[max(steps)] if steps else None
        state = _state(trial)
        value = trial.value if state == "complete" else (last if state == "pruned" else None)
        seconds = trial.user_attrs.get(SECONDS) or (trial.duration.total_seconds()
                                                    if trial.duration else None)
        reason = (f"its run folder's result is recorded as trial {recorded_as}"
                  if recorded_as is not None else _reason(trial, state, steps))
        return cls(trial.number, state, value, dict(trial.params), max(steps) if steps else 0,
                   seconds, trial.user_attrs.get(RUN), reason)


def _state(trial: FrozenTrial) -> str:
    if trial.state == TrialState.FAIL:
        return "failed" if FAILURE in trial.user_attrs else "interrupted"
    return {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned",
            TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}[trial.state]


def _reason(trial: FrozenTrial, state: str, steps: dict[int, float]) -> str:
    if state == "pruned":
        return f"after epoch {max(steps)}" if steps else ""
    if state == "failed":
        return str(trial.user_attrs[FAILURE])
    if state == "interrupted":
        return str(trial.user_attrs.get(INTERRUPTED) or "its worker stopped")
    return ""


def trial_records(study: optuna.Study) -> list[TrialRecord]:
    """Every trial of the study but the surplus ones (asked for by two workers at once)."""
    trials = study.get_trials(deepcopy=False)
    # a failed trial whose run folder finished is recorded again, as a later trial of that folder
    holder = {t.user_attrs[RUN]: t.number for t in trials if RUN in t.user_attrs and has_outcome(t)}
    return [TrialRecord.of(t, _recorded_as(t, holder)) for t in trials
            if not t.user_attrs.get(SURPLUS) and t.state != TrialState.WAITING]


def _recorded_as(trial: FrozenTrial, holder: dict[str, int]) -> int | None:
    number = holder.get(trial.user_attrs.get(RUN)) if trial.state == TrialState.FAIL else None
    return number if number is not None and number > trial.number else None


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return study.best_trial if completed else None


def write_trials_csv(records: list[TrialRecord], names: list[str], metric: str, path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["trial", "state", metric, *names, "epochs", "seconds", "run", "reason"])
    for r in records:
        writer.writerow([r.number, r.state, "" if r.value is None else r.value,
                         *(r.params.get(name, "") for name in names), r.epochs,
                         "" if r.seconds is None else round(r.seconds, 1), r.run or "", r.reason])
    atomic_write_text(path, buffer.getvalue())


def write_best(study: optuna.Study, space: SearchSpace, best: FrozenTrial, path: Path) -> None:
    """best.yaml: the study's training settings with the best trial's values, `out` left to
    `cnnlab train`; a training config that `cnnlab train --config` runs as it is."""
    config = apply_overrides(base_config(study), {**space.overrides(best.params), "out": None})
    metric = study.user_attrs[METRIC]
    header = (f"# the best of study {study.study_name!r}: {metric} {best.value:.6g} in trial "
              f"{best.number}{' (' + best.user_attrs[RUN] + ')' if RUN in best.user_attrs else ''}"
              f"\n# train it: cnnlab train --config {path}\n")
    atomic_write_text(path, header + config.to_yaml())


def importances(study: optuna.Study) -> tuple[dict[str, float] | None, str]:
    """Each setting's share of the metric's variation (PED-ANOVA, Optuna's default evaluator, over
    the completed trials), or None and why not."""
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(completed) < 2:
        return None, "needs two or more completed trials"
    try:
        with warnings.catch_warnings():  # experimental in older Optuna releases
            warnings.simplefilter("ignore")
            evaluator = optuna.importance.PedAnovaImportanceEvaluator()
            found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (RuntimeError, ValueError) as error:  # e.g. every trial with the same settings
        return None, str(error).splitlines()[0]
    if not found or not all(math.isfinite(v) for v in found.values()):
        return None, "the completed trials do not vary their settings"
    return found, ""


def write_figures(study: optuna.Study, folder: Path, metric: str,
                  have_importances: bool) -> list[str]:
    """The optimization history, the metric against each setting, the importances and the
    intermediate values (the pruning), as PNGs; returns the names written."""
    import matplotlib
    from optuna.visualization import matplotlib as plots

    from ..base.figures import save_figure

    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    wanted = {"history.png": lambda: plots.plot_optimization_history(study, target_name=metric),
              "slices.png": lambda: plots.plot_slice(study, target_name=metric),
              "importance.png": lambda: plots.plot_param_importances(study, target_name=metric),
              "intermediate.png": lambda: plots.plot_intermediate_values(study)}
    if not have_importances:
        wanted.pop("importance.png")
    written = []
    for name, plot in wanted.items() if completed else ():
        # Optuna's plots set their own style globally: rc_context puts the process's back after.
        with warnings.catch_warnings(), matplotlib.rc_context():
            warnings.simplefilter("ignore")  # they are marked experimental
            axes = plot()
            first = axes.flat[0] if hasattr(axes, "flat") else axes
            save_figure(first.figure, folder / name)
        written.append(name)
    return written


def metric_value(rows: list, metric: str) -> float:
    """A run's score: its best epoch's metric (the lowest loss, the highest accuracy)."""
    values = [getattr(row, metric) for row in rows if getattr(row, metric) is not None]
    if not values:
        raise CnnlabError(f"--metric {metric} needs a validation split"
                          f"{' and --adversarial training' if metric == 'val_robust_acc' else ''}; "
                          f"the trial's run has none")
    return min(values) if metric == "val_loss" else max(values)
