"""Trials that ended in their run folder but not in the study: a worker killed (SIGKILL, the out-of-
memory killer, a lost machine) after training wrote results.json and before the study heard the
trial's value. The folder is the record that survived; the study is told what it says, so that the
trial counts with its value instead of being made up, and a best trial is never lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..base.errors import CnnlabError
from ..config import load_config
from ..run.folder import CONFIG, RESULTS, read_metrics
from ..run.results import TrainingResults
from .results import metric_value
from .space import SearchSpace
from .study import FAILURE, INTERRUPTED, RUN, SECONDS, SURPLUS, has_outcome, orphaned

DIVERGED = "diverged: the loss or the weights stopped being finite"


@dataclass(frozen=True)
class Outcome:
    """How a trial ended, as its run folder says."""

    state: TrialState
    value: float | None  # the metric, for a complete trial
    failure: str | None  # why it failed, for a failed one
    seconds: float

    def shown(self, metric: str) -> str:
        if self.state == TrialState.COMPLETE:
            return f"complete, {metric} {self.value:.6g}"
        return "pruned" if self.state == TrialState.PRUNED else f"failed ({self.failure})"


def recover_finished(study: optuna.Study, space: SearchSpace, metric: str) -> dict[int, str]:
    """Record each trial whose run folder finished while the study lost track of it: one left
    running by a process of this machine that is gone is told its outcome; one failed meanwhile
    (by the heartbeat, or by an earlier run that found it orphaned) is added again, whole, as a
    new trial, since a finished trial cannot be changed. Returns trial number -> what was
    recorded."""
    trials = study.get_trials(deepcopy=False)
    claimed = {t.user_attrs.get(RUN) for t in trials if has_outcome(t)}
    recorded = {}
    for trial in trials:
        lost = orphaned(trial) or (trial.state == TrialState.FAIL and FAILURE not in trial.user_attrs
                                   and trial.user_attrs.get(RUN) not in claimed)
        outcome = folder_outcome(trial, space, metric) if lost else None
        if outcome is None:
            continue
        if trial.state == TrialState.RUNNING:
            _tell(study, trial, outcome)
        else:
            study.add_trial(_copy(trial, outcome))
            claimed.add(trial.user_attrs[RUN])
        recorded[trial.number] = outcome.shown(metric)
    return recorded


def folder_outcome(trial: FrozenTrial, space: SearchSpace, metric: str) -> Outcome | None:
    """How the trial's run folder says it ended, or None when it did not end there (or the folder
    is not this trial's: trained with other values, unreadable, gone)."""
    if trial.user_attrs.get(SURPLUS) or RUN not in trial.user_attrs:
        return None
    folder = Path(trial.user_attrs[RUN])
    try:
        if not (folder / RESULTS).is_file() or not _trained_with(folder, trial.params, space):
            return None
        results = TrainingResults.read(folder / RESULTS)
        if results.status in ("finished", "stopped early"):
            value = metric_value(read_metrics(folder), metric)
            return Outcome(TrialState.COMPLETE, value, None, results.seconds)
    except (CnnlabError, OSError, ValueError):  # a damaged folder: the trial is made up instead
        return None
    if results.status == "pruned":
        return Outcome(TrialState.PRUNED, None, None, results.seconds)
    if results.status == "diverged":
        return Outcome(TrialState.FAIL, None, DIVERGED, results.seconds)
    return None


def _trained_with(folder: Path, params: dict[str, Any], space: SearchSpace) -> bool:
    """Whether the folder's config.yaml holds the trial's values: the folder is the trial's."""
    values = load_config(folder / CONFIG).to_dict()
    for name, key in ((p.name, p.key) for p in space.params):
        found: Any = values
        for part in key.split("."):
            found = found.get(part) if isinstance(found, dict) else None
        if name not in params or not _same(found, params[name]):
            return False
    return True


def _same(found: Any, wanted: Any) -> bool:
    if isinstance(wanted, float) and isinstance(found, int | float) and not isinstance(found, bool):
        return math.isclose(found, wanted, rel_tol=1e-9)
    return found == wanted


def _tell(study: optuna.Study, trial: FrozenTrial, outcome: Outcome) -> None:
    # the storage's own calls: the Trial that could set these died with its process
    storage, trial_id = study._storage, trial._trial_id
    storage.set_trial_user_attr(trial_id, SECONDS, outcome.seconds)
    if outcome.failure:
        storage.set_trial_user_attr(trial_id, FAILURE, outcome.failure)
    study.tell(trial.number, outcome.value, state=outcome.state, skip_if_finished=True)


def _copy(trial: FrozenTrial, outcome: Outcome) -> FrozenTrial:
    kept = {key: value for key, value in trial.user_attrs.items() if key != INTERRUPTED}
    attrs = {**kept, SECONDS: outcome.seconds,
             **({FAILURE: outcome.failure} if outcome.failure else {})}
    return optuna.trial.create_trial(
        state=outcome.state, value=outcome.value, params=trial.params,
        distributions=trial.distributions, user_attrs=attrs,
        intermediate_values=trial.intermediate_values)
