"""`cnnlab report`'s settings."""

from __future__ import annotations

from dataclasses import dataclass

from ..base.settings import option
from ..config.common import QUIET_HELP


@dataclass(frozen=True)
class ReportSettings:
    full: bool = option(False, "first run what the report lacks: evaluate, a quick attack (500 "
                               "images), explanations of 4 test images, the baselines")
    out: str | None = option(None, "the HTML file (default RUN/report.html)", metavar="FILE")
    quiet: bool = option(False, QUIET_HELP)
