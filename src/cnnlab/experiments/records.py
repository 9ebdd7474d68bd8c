"""A run folder as `cnnlab runs` and `cnnlab compare` see it: config.yaml, metrics.csv and
results.json read into typed records.

Nothing here loads torch (run/folder.py does, so its file names are repeated below): listing a few
hundred runs reads small text files only. A run killed mid-training has no results.json; it is
still a run, and its status says what is known.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from ..base.errors import CnnlabError
from ..base.typed import check_ranges
from ..base.yamlload import load_yaml
from ..config import TrainConfig, flat_key
from ..config.files import SECTION_SHORTHAND
from ..run.results import EpochRow, TrainingResults

# As run/folder.py names them.
CONFIG, METRICS, RESULTS, WEIGHTS = "config.yaml", "metrics.csv", "results.json", "model.safetensors"
META, CHECKPOINT = "model.json", "last.ckpt"
LOCK = ".lock"  # held by a training process (base/fileio.folder_lock): it holds the pid
# What makes a folder a run: a file training writes once an epoch ends (or once it ends), or the
# config.yaml and lock of a training that is in its first epoch (or was killed in it). A
# config.yaml alone is no run: many projects have one.
TRAINED_FILES = frozenset({METRICS, RESULTS, WEIGHTS, META, CHECKPOINT})
STARTED_FILES = frozenset({CONFIG, LOCK})


@dataclass(frozen=True)
class RunRecord:
    """What a run folder says about its run; `problem` names a file that could not be read."""

    path: Path
    # every setting by dotted key ('data.image_size'), defaults filled in; empty: no config.yaml
    settings: dict[str, Any]
    history: tuple[EpochRow, ...]
    results: TrainingResults | None
    status: str
    date: datetime | None  # when the run last wrote: its results, else its last epoch
    problem: str | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def data(self) -> str:
        return str(self.settings.get("data.name") or "?")

    @property
    def model(self) -> str:
        if not self.settings:
            return "?"
        return str(self.settings.get("model") or "default")

    @property
    def epochs(self) -> int:
        return self.results.epochs if self.results else len(self.history)

    @property
    def planned_epochs(self) -> int | None:
        planned = self.settings.get("epochs")
        return planned if isinstance(planned, int) else None

    @property
    def best_val_accuracy(self) -> float | None:
        if self.results is not None:
            return self.results.best_val_accuracy
        scores = [row.val_acc for row in self.history if row.val_acc is not None]
        return max(scores) if scores else None

    @property
    def test_accuracy(self) -> float | None:
        return self.results.test_accuracy if self.results else None

    @property
    def seconds(self) -> float | None:
        if self.results is not None:
            return self.results.seconds
        return round(sum(row.seconds for row in self.history), 1) if self.history else None


def holds_a_run(names: set[str] | frozenset[str]) -> bool:
    """Whether a folder with these files is a run folder."""
    return bool(names & TRAINED_FILES) or names >= STARTED_FILES


def is_run_folder(path: Path) -> bool:
    return holds_a_run({name for name in TRAINED_FILES | STARTED_FILES if (path / name).is_file()})


def read_run(path: str | Path) -> RunRecord:
    """The record of one run folder. A file that cannot be read leaves its part empty and is named
    in `problem`, so one damaged run does not hide the others from a listing."""
    path = Path(path)
    problems: list[str] = []
    settings = _read_part(lambda: _settings(path / CONFIG), {}, problems)
    history = _read_part(lambda: read_history(path / METRICS), (), problems)
    results = _read_part(lambda: TrainingResults.read(path / RESULTS)
                         if (path / RESULTS).is_file() else None, None, problems)
    record = RunRecord(path, settings, history, results, "", _date(path),
                       "; ".join(problems) or None)
    return _with_status(record)


def read_history(path: Path) -> tuple[EpochRow, ...]:
    """metrics.csv, one EpochRow per epoch; no file (no epoch finished) gives none."""
    if not path.is_file():
        return ()
    with open(path, newline="", encoding="utf-8") as handle:
        try:
            rows = tuple(EpochRow.from_dict(row) for row in csv.DictReader(handle))
        except (KeyError, ValueError, TypeError) as error:
            raise CnnlabError(f"{path}: malformed row ({error})") from None
    for number, row in enumerate(rows, start=1):
        check_ranges(row, f"{path} row {number}")
    return rows


def flat_settings(values: dict[str, Any]) -> dict[str, Any]:
    """A config.yaml's settings by dotted key, with the current defaults for any it lacks (a run
    made before a setting existed ran with its default)."""
    defaults = _defaults()
    for section, key in SECTION_SHORTHAND.items():  # `data: digits`
        if isinstance(values.get(section), str):
            values = {**values, section: {key: values[section]}}
    return {**defaults, **_flatten(values)}


@cache
def _defaults() -> dict[str, Any]:
    return _flatten(TrainConfig().to_dict())


def setting_label(key: str) -> str:
    """A setting's name as its flag says it: 'data.image_size' -> 'image_size'."""
    short = key.rpartition(".")[2]
    return short if flat_key(short) == key else key


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _with_status(record: RunRecord) -> RunRecord:
    """results.json's status; without one, whether training still runs or was cut short."""
    if record.results is not None:
        return replace(record, status=record.results.status)
    if (record.path / RESULTS).is_file():  # training ended, but how is unknown: said in `problem`
        return replace(record, status="unreadable")
    # no results and no live training process: killed, interrupted, or a crash of the machine
    return replace(record, status="running" if _training_now(record.path) else "incomplete")


def _training_now(path: Path) -> bool:
    try:
        pid = int((path / LOCK).read_text(encoding="utf-8").strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False  # no lock, an unreadable one, or its process is gone: killed
    return True


def _date(path: Path) -> datetime | None:
    for name in (RESULTS, METRICS, CONFIG):
        try:
            return datetime.fromtimestamp((path / name).stat().st_mtime)
        except OSError:
            continue
    return None


def _settings(path: Path) -> dict[str, Any]:
    """The flat settings of a config.yaml; none when the folder has none."""
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise CnnlabError(f"{path} is not UTF-8 text ({error.reason})") from None
    values = load_yaml(text, str(path))  # bounded: a file of nested aliases is refused
    if values is None:
        raise CnnlabError(f"{path} is empty: training writes every setting there")
    if not isinstance(values, dict):
        raise CnnlabError(f"{path}: expected a mapping of settings")
    settings = flat_settings(values)
    bad = next((key for key, value in settings.items() if not _finite(value)), None)
    if bad is not None:
        raise CnnlabError(f"{path}: the setting {bad!r} is {settings[bad]!r}, which no run can have "
                          f"used (numbers must be finite)")
    return settings


def _finite(value: Any) -> bool:
    """No NaN or infinity in a value, or in the values of a list: JSON cannot hold them."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_finite(item) for item in value)
    if isinstance(value, dict):
        return all(_finite(item) for item in value.values())
    return True


def _read_part(read, empty: Any, problems: list[str]) -> Any:
    try:
        return read()
    except (CnnlabError, OSError) as error:
        problems.append(str(error))
        return empty
