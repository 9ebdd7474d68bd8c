"""`cnnlab tune`: a sweep of training settings on an Optuna study. Each trial trains a real run
folder (OUT/trial-007/), reports its validation score after every epoch so that the pruner can
stop it, and counts towards the study's total, which every worker sharing the study fills together.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, Trial

from ..base.distributed import ranks_from_environment
from ..base.errors import CnnlabError
from ..config import TrainConfig, apply_overrides
from ..run.results import EpochRow
from ..train import Run, TrainingStopped, fit
from .processes import TrialCrashed, fit_on_processes
from .recover import recover_finished
from .results import (
    BEST_YAML,
    TRIALS_CSV,
    TrialRecord,
    best_trial,
    importances,
    metric_value,
    trial_records,
    write_best,
    write_figures,
    write_trials_csv,
)
from .settings import TuneSettings
from .space import SearchSpace
from .study import (
    FAILURE,
    INTERRUPTED,
    RUN,
    SURPLUS,
    WORKER,
    counted,
    counted_before,
    counts,
    fail_orphans,
    open_storage,
    open_study,
    worker_id,
)

Say = Callable[[str], None]
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# A disk full, over quota, a file over its size limit, a folder gone read-only.
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


class TrialFailed(Exception):
    """A trial that failed on its own settings (diverged, out of memory): recorded, and the sweep
    goes on."""


class Surplus(Exception):
    """A trial asked for when the study had its total already (two workers asked at once)."""


@dataclass(frozen=True)
class TuneResult:
    """What a sweep leaves: its folder and study, every trial, the best, the importances."""

    folder: Path
    study: str
    storage: str
    metric: str
    space: SearchSpace
    trials: tuple[TrialRecord, ...]
    best: TrialRecord | None
    importances: dict[str, float] | None
    importance_note: str  # why there are none
    files: tuple[str, ...]  # written into the folder
    total: int  # --trials: the study's total
    ran: int  # trials this worker ran
    stopped: str  # why this worker stopped

    @property
    def counted(self) -> int:
        return sum(r.state in ("complete", "pruned", "failed") for r in self.trials)


def parse_budget(text: str | None) -> float | None:
    """'90s', '20m', '1.5h', '2d' (a bare number: minutes) -> seconds."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(text).lower())
    if not match or float(match[1]) <= 0:
        raise CnnlabError(f"--budget must be a time such as 90s, 20m or 2h, got {text!r}")
    return float(match[1]) * UNITS[match[2] or "m"]


def default_folder(config: TrainConfig) -> Path:
    """runs/tune-DATA-MODEL: the same command finds the same sweep again."""
    data = config.data.name.rstrip("/").split("/")[-1]
    model = config.model if config.model and re.fullmatch(r"[\w.:-]+", config.model) else None
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"tune-{data}" + (f"-{model}" if model else ""))
    return Path("runs") / name


def _shown(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def _score(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{metric} {value:.4f}" if metric == "val_loss" else f"{metric} {value:.2%}"


@dataclass
class Objective:
    """What one trial does: take its settings, train its run folder, score it."""

    space: SearchSpace
    config: TrainConfig
    settings: TuneSettings
    folder: Path
    say: Say
    ran: list[int] = field(default_factory=list)
    no_room: str | None = None  # why the sweep stopped, when a trial could not write its folder

    def __call__(self, trial: Trial) -> float:
        if counted_before(trial.study, trial.number) >= self.settings.trials:
            trial.set_user_attr(SURPLUS, True)
            trial.study.stop()
            raise Surplus(f"the study has its {self.settings.trials} trials")
        trial.set_user_attr(WORKER, worker_id())
        values = {param.name: param.suggest(trial) for param in self.space.params}
        out = self.folder / f"trial-{trial.number:03d}"
        config = apply_overrides(self.config, {**self.space.overrides(values), "out": str(out)})
        trial.set_user_attr(RUN, str(out))  # before training: a crash still says where it was
        self.say(f"trial {trial.number}: {_shown(values)}")
        self.ran.append(trial.number)
        run = self._train(trial, config)
        trial.set_user_attr(RUN, str(run.path))
        if run.status == "diverged":
            self._fail(trial, "diverged: the loss or the weights stopped being finite")
        if run.status == "pruned":
            raise optuna.TrialPruned(f"after epoch {len(run.history)}")
        return metric_value(run.history, self.settings.metric)

    def _train(self, trial: Trial, config: TrainConfig) -> Run:
        report, processes = self._reporter(trial, config.epochs), self.settings.trial_processes
        try:
            if processes > 1:
                return fit_on_processes(config, processes, on_epoch_end=report)
            return fit(config, quiet=True, on_epoch_end=lambda _model, row: report(row))
        except KeyboardInterrupt:
            trial.set_user_attr(INTERRUPTED, "stopped by Ctrl-C")
            raise
        except CnnlabError as error:  # the user's to fix: every trial would fail alike
            cause = error.__context__  # train's own line names its cause only in its text
            if isinstance(cause, OSError) and cause.errno in NO_ROOM:
                self.no_room = self._no_room(trial, cause, config.out)
            trial.set_user_attr(INTERRUPTED, str(error))
            if self.no_room is not None:
                raise CnnlabError(self.no_room) from None
            raise
        except TrialCrashed as crash:  # its processes' own error, said by them
            self._fail(trial, str(crash))
        except Exception as error:  # out of memory, a setting the network cannot take
            self._fail(trial, f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200]}"
                       if str(error).strip() else type(error).__name__)

    def _no_room(self, trial: Trial, error: OSError, out: str | None) -> str:
        """A trial that could not write its run folder is made up by the next run of the sweep
        (its folder is not resumed): the line says so, not train's --resume."""
        have = counted(trial.study, besides=trial.number)
        return (f"cannot write {error.filename or out}: {error.strerror or error}; trial "
                f"{trial.number} stopped, and the study keeps {have} of its {self.settings.trials} "
                f"trials; make room, then run the same cnnlab tune command again: it makes up "
                f"the missing ones")

    def _fail(self, trial: Trial, reason: str) -> None:
        trial.set_user_attr(FAILURE, reason)
        raise TrialFailed(reason)

    def _reporter(self, trial: Trial, last: int) -> Callable[[EpochRow], None]:
        """The epoch callback: report the epoch's score; stop the run when the pruner says so."""
        metric, pruner = self.settings.metric, self.settings.pruner

        def report(row: EpochRow) -> None:
            trial.report(metric_value([row], metric), row.epoch)
            # after the last epoch the trial's work is done: pruning it would only discard it
            if row.epoch < last and trial.should_prune():
                raise TrainingStopped("pruned", f"pruned by the {pruner} pruner after epoch "
                                                f"{row.epoch}")

        return report


def run_sweep(config: TrainConfig, space: SearchSpace, settings: TuneSettings,
              say: Say = lambda line: None) -> TuneResult:
    """Run trials of the study until it has `settings.trials`, the budget ends or Ctrl-C; then
    write trials.csv, best.yaml, the figures, and return the TuneResult."""
    if ranks_from_environment().enabled:
        raise CnnlabError("cnnlab tune starts torchrun for each trial itself: run it without "
                          "torchrun, with --trial-processes N to train each trial on N processes; "
                          "to share the trials, start several tune workers on one --storage")
    budget = parse_budget(settings.budget)
    folder = Path(settings.out) if settings.out else default_folder(config)
    folder.mkdir(parents=True, exist_ok=True)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # each trial gets a line of our own
    try:
        return _sweep(config, space, settings, folder, budget, say)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _sweep(config: TrainConfig, space: SearchSpace, settings: TuneSettings, folder: Path,
           budget: float | None, say: Say) -> TuneResult:
    place = open_storage(settings.storage, folder, settings.study or folder.name)
    study = open_study(place, settings, space, config, say)
    for number, outcome in recover_finished(study, space, settings.metric).items():
        say(f"trial {number} ended in its run folder but not in the study (its worker stopped "
            f"first): recorded from the folder, {outcome}")
    for number in fail_orphans(study):
        say(f"trial {number} was left running by a process that is gone: it will be made up")
    objective = Objective(space, config, settings, folder, say)
    try:
        say(_opening(study, settings, place.shown, folder))
        if counted(study) < settings.trials:
            study.optimize(objective, timeout=budget, catch=(TrialFailed, Surplus),
                           callbacks=[_after_trial(settings, say)])
    except Exception:
        # a disk that filled during a trial: said as the sweep's, even where the study, on the
        # same disk, could not record the trial's end (Optuna then raises its own error)
        if objective.no_room is not None:
            raise CnnlabError(objective.no_room) from None
        raise
    except KeyboardInterrupt:
        result = summarize(study, space, settings, folder, place.shown, objective.ran, "Ctrl-C")
        raise KeyboardInterrupt(f"study {place.name!r} keeps {result.counted} of its "
                                f"{settings.trials} trials ({place.shown}); the same command "
                                f"runs the missing ones") from None
    done = counted(study) >= settings.trials
    why = (f"the study has its {settings.trials} trials" if done else
           f"the budget of {settings.budget} ran out")
    return summarize(study, space, settings, folder, place.shown, objective.ran, why)


def _opening(study: optuna.Study, settings: TuneSettings, shown: str, folder: Path) -> str:
    have = counted(study)
    todo = max(0, settings.trials - have)
    return (f"study {study.study_name!r} in {shown}: {have} of {settings.trials} trials there, "
            f"{todo} to run; trials go to {folder}/")


def _after_trial(settings: TuneSettings, say: Say) -> Callable[[optuna.Study, FrozenTrial], None]:
    def after(study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.user_attrs.get(SURPLUS):
            return
        record = TrialRecord.of(trial)
        have = sum(counts(t) and t.state.is_finished() for t in study.get_trials(deepcopy=False))
        reason = f" ({record.reason})" if record.reason else ""
        took = f" in {record.seconds:.1f}s" if record.seconds is not None else ""
        say(f"trial {trial.number} {record.state}{reason}: {_score(settings.metric, record.value)}"
            f"{took}; {have} of {settings.trials} done")
        if counted(study) >= settings.trials:
            study.stop()

    return after


def summarize(study: optuna.Study, space: SearchSpace, settings: TuneSettings, folder: Path,
              shown: str, ran: list[int], stopped: str) -> TuneResult:
    """The trials of every worker, and the files written from them."""
    records = trial_records(study)
    write_trials_csv(records, space.names(), settings.metric, folder / TRIALS_CSV)
    files = [TRIALS_CSV]
    best = best_trial(study)
    if best is not None:
        write_best(study, space, best, folder / BEST_YAML)
        files.append(BEST_YAML)
    found, note = importances(study)
    files += write_figures(study, folder, settings.metric, found is not None)
    best_record = next((r for r in records if best is not None and r.number == best.number), None)
    return TuneResult(folder, study.study_name, shown, settings.metric, space, tuple(records),
                      best_record, found, note, tuple(files), settings.trials, len(ran), stopped)
