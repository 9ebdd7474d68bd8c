"""What a check found, as types: one Finding per row of check.csv (check.report, with check.json's
type), and the CheckResult that the table, the files and the page are made from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .labels import LabelIssues
from .report import Finding
from .scan import Items, Scan

KINDS = ("unreadable", "label-issue", "leak", "duplicate", "outlier", "blank", "size", "aspect",
         "mode")


@dataclass
class CheckResult:
    data: str
    items: Items
    scan: Scan
    findings: list[Finding]
    summary: dict[str, Any]
    pool: np.ndarray  # indices (into items) of the images whose labels were checked
    issues: LabelIssues | None
    folder: Path | None = None  # where check.json and the rest were written (cnnlab check)
