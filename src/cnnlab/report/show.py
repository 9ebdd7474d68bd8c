"""`cnnlab report` on the terminal: where the page went and how large it is."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..base.show import console

if TYPE_CHECKING:
    from .settings import ReportSettings


def show_report(result: Path, settings: ReportSettings) -> int:
    if not settings.quiet:
        console.print(f"written to {result} ({result.stat().st_size / 1e6:.1f} MB)")
    return 0
