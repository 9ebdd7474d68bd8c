"""`cnnlab report RUN`: the whole story of a run in one self-contained HTML file."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path


def write_report(run: str | Path, **options: Any) -> Path:
    """Write RUN/report.html (see report.build.write_report for the options)."""
    from .build import write_report as write

    return write(run, **options)


__all__ = ["write_report"]
