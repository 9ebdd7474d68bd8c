"""What a check found, as types: one Finding per row of check.csv, and the CheckResult that the
table, the files and the page are made from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .labels import LabelIssues
from .scan import Items, Scan

KINDS = ("unreadable", "label-issue", "leak", "duplicate", "outlier", "blank", "size", "aspect",
         "mode")


@dataclass
class Finding:
    """One row of check.csv: what is wrong with which image, and whether --exclude drops it."""

    kind: str
    file: str
    split: str
    label: str
    suggested: str = ""
    score: float | None = None  # label quality (low: likely wrong); similarity; outlier distance
    other_file: str = ""
    other_split: str = ""
    other_label: str = ""
    match: str = ""  # duplicates: exact | near
    exclude: str = "no"
    note: str = ""
    index: int = field(default=-1, repr=False)  # the image's row in Items (not written)
    other: int = field(default=-1, repr=False)


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
