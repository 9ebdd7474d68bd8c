"""The Optuna study a sweep works on: its storage, its sampler and pruner, and the count of trials
that make up its total, shared by every worker (process or machine) that opens it."""

from __future__ import annotations

import os
import random
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from ..base.errors import CnnlabError
from ..base.fileio import process_alive
from ..config import TrainConfig
from ..run.folder import RESULTS
from .settings import TuneSettings
from .space import SearchSpace

# A trial's user attributes, set by the worker that runs it (SECONDS: by the one that recorded
# it from its run folder, the training's own time).
RUN, WORKER, FAILURE, INTERRUPTED, SURPLUS = "run", "worker", "failure", "interrupted", "surplus"
SECONDS = "seconds"
# The study's, set by the worker that creates it: what every later worker must agree with.
SEARCH, METRIC, CONFIG = "cnnlab_search", "cnnlab_metric", "cnnlab_config"
# Settings that may differ between workers: where and how each one runs its trials.
MACHINE = frozenset({"out", "device", "threads", "amp", "channels_last", "workers", "log", "mlflow",
                     "report"})
# A worker on another machine that stops is noticed by its silence: its trial then fails, and the
# trial no longer counts towards the total (RDB storages; a journal file has no heartbeat).
HEARTBEAT_SECONDS, GRACE_SECONDS = 60, 180


@dataclass(frozen=True)
class StudyPlace:
    """Where a study lives, said without a password."""

    storage: BaseStorage
    shown: str
    name: str


def open_storage(url: str | None, folder: Path, name: str) -> StudyPlace:
    """The storage `url` names (default: sqlite in the sweep folder), opened or created."""
    url = url or f"sqlite:///{(folder / 'study.db').resolve()}"
    try:
        if url.startswith("journal:"):
            path = Path(url.removeprefix("journal:")).expanduser()
            if not path.parent.is_dir():  # a typo in the path would make folders anywhere
                raise CnnlabError(f"--storage {url}: the folder {path.parent} does not exist; "
                                  f"make it first, or give a journal file in a folder that does")
            # The open(O_EXCL) lock works on NFS, where a sweep over machines keeps its journal.
            backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
            return StudyPlace(JournalStorage(backend), url, name)
        storage = _rdb_storage(url)
    except CnnlabError:
        raise
    except (ImportError, ValueError) as error:
        raise CnnlabError(f"--storage {_hidden(url)}: {_first_line(error)}") from None
    except Exception as error:  # SQLAlchemy's errors: no server, refused login, bad database
        raise CnnlabError(f"cannot open the study storage {_hidden(url)}: "
                          f"{_first_line(error)}") from None
    return StudyPlace(storage, _hidden(url), name)


def _rdb_storage(url: str, attempts: int = 5) -> RDBStorage:
    """Optuna's RDBStorage on `url`. Workers started together on a new database race to create its
    tables, and the losers' CREATE fails: they try again, and find the tables made."""
    # SQLite: a writer waits for another worker's write instead of failing "database is locked".
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():  # the heartbeat is marked experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_SECONDS,
                                  grace_period=GRACE_SECONDS)
        except (ImportError, ValueError):  # no such driver, a malformed URL: no use trying again
            raise
        except Exception:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def _hidden(url: str) -> str:
    """The URL with its password replaced by ***."""
    scheme, sep, rest = url.partition("://")
    user, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in user:
        return url
    return f"{scheme}://{user.split(':')[0]}:***@{host}"


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def make_sampler(settings: TuneSettings, trials_before: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler for a study that holds `trials_before` trials. A study taken up again seeds its
    sampler anew from the seed and that count: with the seed alone, it would propose the points
    of its first trials once more. QMC keeps the seed: it continues its sequence by itself."""
    seed = settings.sampler_seed
    if seed is not None and trials_before and settings.sampler != "qmc":
        seed = int(np.random.SeedSequence([seed, trials_before]).generate_state(1)[0])
    with warnings.catch_warnings():  # qmc and gp are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return {"tpe": lambda: optuna.samplers.TPESampler(seed=seed),
                "random": lambda: optuna.samplers.RandomSampler(seed=seed),
                "qmc": lambda: optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False),
                "gp": lambda: optuna.samplers.GPSampler(seed=seed)}[settings.sampler]()


def make_pruner(settings: TuneSettings) -> optuna.pruners.BasePruner:
    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=settings.startup_trials)
    if settings.pruner == "hyperband":  # the largest budget: the epochs of the first trial to end
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource="auto")
    return optuna.pruners.NopPruner()


def comparable(config: TrainConfig) -> dict[str, Any]:
    """The settings every worker of a study must share: all but where and how trials run."""
    values = config.to_dict()
    return {key: value if not isinstance(value, dict) else
            {k: v for k, v in value.items() if k not in MACHINE}
            for key, value in values.items() if key not in MACHINE}


def open_study(place: StudyPlace, settings: TuneSettings, space: SearchSpace,
               config: TrainConfig, say: Callable[[str], None] = lambda line: None) -> optuna.Study:
    """Create the study, or join it when it exists with the same space, metric and settings. One
    that differs is refused, unless no trial of it came to anything (each was stopped before it
    trained, e.g. refused by train): then it starts over with these settings."""
    study = _create(place, settings)
    mine = {SEARCH: space.to_dict(), METRIC: settings.metric, CONFIG: config.to_dict()}
    theirs = study.user_attrs
    differs = _differences(theirs, mine, config) if SEARCH in theirs else []
    if differs and _holds_results(study):
        raise CnnlabError(f"study {place.name!r} in {place.shown} was started with "
                          f"{' and '.join(differs)} (it searches {_spec(theirs[SEARCH])} for "
                          f"{theirs[METRIC]}) and holds trials of them; give another --study or "
                          f"--out to start another study, or the same settings to go on with it")
    if differs:
        optuna.delete_study(study_name=place.name, storage=place.storage)
        study = _create(place, settings)
        say(f"study {place.name!r} had {' and '.join(differs)} and no trial that trained: "
            f"started over with this command's")
    if SEARCH not in study.user_attrs:  # new (or made elsewhere without them): written now
        for key, value in mine.items():
            study.set_user_attr(key, value)
    study.sampler = make_sampler(settings, len(study.get_trials(deepcopy=False)))
    return study


def _create(place: StudyPlace, settings: TuneSettings) -> optuna.Study:
    direction = "minimize" if settings.metric == "val_loss" else "maximize"
    return optuna.create_study(storage=place.storage, study_name=place.name, direction=direction,
                               sampler=make_sampler(settings), pruner=make_pruner(settings),
                               load_if_exists=True)


def _differences(theirs: dict[str, Any], mine: dict[str, Any], config: TrainConfig) -> list[str]:
    """What of the stored study differs from this command's, as 'another search space'."""
    from ..config import config_from_dict

    return [what for what, same in (
        ("another search space", theirs[SEARCH] == mine[SEARCH]),
        ("another metric", theirs[METRIC] == mine[METRIC]),
        ("other training settings",
         comparable(config_from_dict(theirs[CONFIG])) == comparable(config)),
    ) if not same]


def _holds_results(study: optuna.Study) -> bool:
    """Whether any trial is worth keeping: under way, queued, complete, pruned, failed on its own
    settings, or finished in its run folder though the study was not told."""
    return any(trial.state != TrialState.FAIL or FAILURE in trial.user_attrs
               or (RUN in trial.user_attrs and (Path(trial.user_attrs[RUN]) / RESULTS).is_file())
               for trial in study.get_trials(deepcopy=False))


def _spec(search: dict[str, str]) -> str:
    return " ".join(f"{name}={text}" for name, text in search.items())


def base_config(study: optuna.Study) -> TrainConfig:
    """The training settings the study was started with (what best.yaml builds on)."""
    from ..config import config_from_dict

    return config_from_dict(study.user_attrs[CONFIG])


def counts(trial: FrozenTrial) -> bool:
    """Whether a trial is one of the study's total: complete, pruned, failed by its own settings
    (diverged, out of memory) or under way. One interrupted, or left by a worker that stopped,
    does not: a later run makes it up."""
    if trial.user_attrs.get(SURPLUS) or trial.user_attrs.get(INTERRUPTED):
        return False
    if trial.state == TrialState.FAIL:
        return FAILURE in trial.user_attrs
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def has_outcome(trial: FrozenTrial) -> bool:
    """Whether a trial ended with an outcome of its settings: complete, pruned, or failed on them."""
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        trial.state == TrialState.FAIL and FAILURE in trial.user_attrs)


def counted(study: optuna.Study, besides: int | None = None) -> int:
    """Trials of the study's total, every worker's (`besides`: a trial number left out)."""
    return sum(counts(t) for t in study.get_trials(deepcopy=False) if t.number != besides)


def counted_before(study: optuna.Study, number: int) -> int:
    """Trials of the study's total numbered before `number`. Whether a trial is surplus is
    decided on these alone: two workers that ask at once for the last trial then agree on which
    of the two it is (the lower number), where counting every other trial would have each see
    the other's and both give theirs up."""
    return sum(counts(t) for t in study.get_trials(deepcopy=False) if t.number < number)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"



def orphaned(trial: FrozenTrial) -> bool:
    """Whether a trial marked running was left by a process of this machine that is gone (killed,
    crashed). Other machines' are left to the heartbeat."""
    where, _, pid = str(trial.user_attrs.get(WORKER, "")).rpartition(":")
    return (trial.state == TrialState.RUNNING and where == socket.gethostname() and pid.isdigit()
            and not process_alive(int(pid)))


def fail_orphans(study: optuna.Study) -> list[int]:
    """Orphaned trials, failed at once, so that this run makes them up."""
    gone = [trial.number for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if orphaned(trial)]
    for number in gone:
        study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
    return gone
