"""`cnnlab runs`: every run folder under a folder in one table, with only the settings that differ.

Reads config.yaml, metrics.csv and results.json; never loads torch.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..base.errors import CnnlabError, suggest
from ..base.fileio import atomic_write_text, is_dir
from ..base.settings import resolve
from ..base.show import duration, percent
from .records import RunRecord, holds_a_run, read_run, setting_label
from .settings import RunsSettings

MAX_DEPTH = 4  # runs/ -> a sweep -> its trials: deep enough, and `cnnlab runs ~` stays quick
# Where a run went and whether it wrote a report never explain a difference in accuracy.
NOT_COMPARED = frozenset({"out", "report"})
# data, model and epochs (planned, beside those done) have columns of their own in the table.
OWN_COLUMNS = frozenset({"data.name", "model", "epochs"})
FORMATS = {".csv": "csv", ".json": "json"}
FIRST = ("data.name", "model")  # what a reader asks first of two runs
# MLflow keeps each run's files in <store>/<run id>/artifacts/ (a run id: 32 hex digits, uuid4's);
# the copy of a run folder logged there with --mlflow is not a run of its own.
MLFLOW_ARTIFACTS = "artifacts"
MLFLOW_RUN_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class RunsTable:
    """The runs found under `root`, in the order asked, and the settings that differ among them."""

    root: Path
    runs: tuple[RunRecord, ...]
    settings: tuple[str, ...]  # dotted keys, in config.yaml's order
    format: str = "table"  # table, csv or json: as asked, or as --out's extension says
    written: Path | None = None  # the .csv or .json file written (with out=)

    def name(self, run: RunRecord) -> str:
        """The run's folder relative to the root (a sweep's trial: 'sweep/trial-3')."""
        if run.path == self.root:
            return run.path.name
        return run.path.relative_to(self.root).as_posix()

    def records(self) -> list[dict[str, Any]]:
        """One plain row per run (what --format json and csv write): fractions, seconds, ISO dates."""
        return [{"name": self.name(run), "path": str(run.path), "data": run.data, "model": run.model,
                 **{setting_label(key): run.settings.get(key) for key in self.settings},
                 "best_val_accuracy": run.best_val_accuracy, "test_accuracy": run.test_accuracy,
                 "epochs": run.epochs, "planned_epochs": run.planned_epochs, "seconds": run.seconds,
                 "date": run.date.isoformat(timespec="seconds") if run.date else None,
                 "status": run.status}
                for run in self.runs]


def find_runs(root: Path, depth: int = MAX_DEPTH) -> list[Path]:
    """Run folders at or under `root` (records.holds_a_run says which). A run's own subfolders
    (evaluate/, export/ ...) are not searched, nor hidden folders, nor the copies of runs an
    MLflow store keeps."""
    try:
        entries = list(os.scandir(root))
    except OSError:
        return []
    if holds_a_run({entry.name for entry in entries if entry.is_file()}):
        return [root]
    if depth == 0:
        return []
    found: list[Path] = []
    for entry in sorted(entries, key=lambda e: e.name):
        if _searched(entry, root):
            found.extend(find_runs(Path(entry.path), depth - 1))
    return found


def _searched(entry: os.DirEntry, parent: Path) -> bool:
    if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
        return False
    return not (entry.name == MLFLOW_ARTIFACTS and MLFLOW_RUN_ID.fullmatch(parent.name))


def differing_settings(runs: list[RunRecord] | tuple[RunRecord, ...],
                       ignore: frozenset[str] = NOT_COMPARED) -> tuple[str, ...]:
    """The settings whose values are not all equal, over the runs whose settings are known."""
    known = [run.settings for run in runs if run.settings]
    keys = dict.fromkeys(key for settings in known for key in settings)
    differ = [key for key in keys if key not in ignore
              and len({_comparable(settings.get(key)) for settings in known}) > 1]
    return tuple(sorted(differ, key=lambda key: key not in FIRST))  # stable: config.yaml's order


def _comparable(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def list_runs(root: str | Path = "runs", settings: RunsSettings | None = None,
              **options: Any) -> RunsTable:
    """Every run under `root` (a run folder itself, or a folder searched for them), sorted;
    written to `out` as CSV or JSON where it names a file.

    Args:
        root: the folder (default runs/).
        settings: RunsSettings; `options` override its fields by name, e.g. sort="test".
    """
    settings = resolve(RunsSettings, settings, options)
    chosen = output_format(settings)  # a bad --out is one line before any folder is read
    root = Path(root)
    if not is_dir(root):
        raise CnnlabError(f"{root} is not a folder; name the folder that holds your runs "
                          f"(default runs/)")
    runs = [read_run(path) for path in find_runs(root)]
    differing = differing_settings(runs, NOT_COMPARED | OWN_COLUMNS)
    table = RunsTable(root, tuple(runs), differing)
    table = replace(table, runs=tuple(sort_runs(table, settings.sort)), format=chosen)
    if settings.out is None or chosen == "table":
        return table
    atomic_write_text(settings.out, formatted(table))
    return replace(table, written=Path(settings.out))


def formatted(table: RunsTable) -> str:
    """The table as its format's text: CSV or JSON."""
    return to_json(table) if table.format == "json" else to_csv(table)


# Sort keys: column name -> (value of a run, highest first).
_SORTS: dict[str, tuple[Callable[[RunRecord], Any], bool]] = {
    "name": (lambda run: str(run.path), False),
    "data": (lambda run: run.data, False),
    "model": (lambda run: run.model, False),
    "val": (lambda run: run.best_val_accuracy, True),
    "test": (lambda run: run.test_accuracy, True),
    "epochs": (lambda run: run.epochs, False),
    "time": (lambda run: run.seconds, False),
    "date": (lambda run: run.date, False),
    "status": (lambda run: run.status, False),
}


def sort_keys(table: RunsTable) -> list[str]:
    return [*_SORTS, *(setting_label(key) for key in table.settings)]


def sort_runs(table: RunsTable, key: str) -> list[RunRecord]:
    """The runs by a column or a setting that differs; accuracies best first, the rest ascending;
    runs without the value last."""
    if key in _SORTS:
        value, descending = _SORTS[key]
    else:
        dotted = next((s for s in table.settings if setting_label(s) == key), None)
        if dotted is None:
            raise CnnlabError(f"--sort {key}: not a column{suggest(key, sort_keys(table))}; sort by "
                              f"{', '.join(sort_keys(table))}")
        value, descending = (lambda run: run.settings.get(dotted)), False
    present = [run for run in table.runs if value(run) is not None]
    missing = [run for run in table.runs if value(run) is None]
    try:
        present.sort(key=value, reverse=descending)
    except TypeError:  # a setting that is a number in one run and text in another
        present.sort(key=lambda run: str(value(run)), reverse=descending)
    return present + missing


def output_format(settings: RunsSettings) -> str:
    """table, csv or json: as --format says, else as --out's extension says, else a table."""
    if settings.out is None:
        return settings.format or "table"
    if is_dir(settings.out):
        raise CnnlabError(f"--out {settings.out} is a folder; give a file name, e.g. "
                          f"{settings.out.rstrip('/')}/runs.{settings.format or 'csv'}")
    inferred = FORMATS.get(Path(settings.out).suffix.lower())
    if settings.format in (None, "table") and inferred is None:
        raise CnnlabError(f"--out {settings.out}: name a .csv or .json file, or add --format csv "
                          f"or json")
    return settings.format if settings.format not in (None, "table") else inferred


def to_json(table: RunsTable) -> str:
    # records.read_run refuses the files whose numbers JSON cannot hold; none may slip through
    return json.dumps(table.records(), indent=2, default=str, allow_nan=False) + "\n"


def to_csv(table: RunsTable) -> str:
    rows = table.records()
    buffer = io.StringIO()
    columns = list(rows[0]) if rows else ["name", "path", "data", "model", "best_val_accuracy",
                                          "test_accuracy", "epochs", "planned_epochs", "seconds",
                                          "date", "status"]
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def table_columns(table: RunsTable) -> list[str]:
    return ["name", "data", "model", *(setting_label(key) for key in table.settings), "best val",
            "test", "epochs", "time", "date", "status"]


def table_rows(table: RunsTable) -> list[list[str]]:
    """The rows as a person reads them: percentages, minutes, the date to the minute."""
    return [[table.name(run), run.data, shorten(run.model),
             *(show_setting(run.settings.get(key), bool(run.settings)) for key in table.settings),
             percent(run.best_val_accuracy), percent(run.test_accuracy), epochs_done(run),
             duration(run.seconds), run.date.strftime("%Y-%m-%d %H:%M") if run.date else "-",
             run.status]
            for run in table.runs]


def epochs_done(run: RunRecord) -> str:
    """'15', or '7/30' for a run that stopped (or is still going) short of its plan."""
    planned = run.planned_epochs
    return str(run.epochs) if planned in (None, run.epochs) else f"{run.epochs}/{planned}"


def show_setting(value: Any, known: bool = True) -> str:
    """A setting's value in a cell: None is the default the recipe or the data chose."""
    if not known:
        return "?"
    if value is None:
        return "default"
    return shorten(f"{value:g}" if isinstance(value, float) else str(value))


def shorten(text: str, width: int = 40) -> str:
    """Layer spec strings can be long: keep the table readable."""
    return text if len(text) <= width else text[:width - 3] + "..."
