"""`cnnlab runs` and `cnnlab compare`: their settings."""

from __future__ import annotations

from dataclasses import dataclass

from ..base.settings import option
from ..config.common import DEVICE_HELP, QUIET_HELP


@dataclass(frozen=True)
class RunsSettings:
    sort: str = option("date", "sort by a column: name, data, model, val, test, epochs, time, date, "
                               "status, or a setting that differs (accuracies best first, the "
                               "rest ascending)", metavar="KEY")
    format: str | None = option(None, "table | csv | json (default: a table on the terminal, or "
                                      "what --out's extension says)",
                                choices=("table", "csv", "json"), kind="format")
    out: str | None = option(None, "write the list to this .csv or .json file", metavar="FILE")


@dataclass(frozen=True)
class CompareSettings:
    evaluate: bool = option(True, "first evaluate, on its test split, each run that lacks "
                                  "RUN/evaluate/ (off: per-class accuracy and the paired test "
                                  "leave that run out)")
    out: str | None = option(None, "results folder (default: compare-A-B beside the first run)",
                             metavar="DIR")
    device: str = option("auto", DEVICE_HELP)
    quiet: bool = option(False, QUIET_HELP)
