"""`cnnlab baselines` on the terminal: every method on the same test split."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..base.show import console, print_table
from .classic import TABLE_COLUMNS, table_row

if TYPE_CHECKING:
    from .classic import Baselines
    from .settings import BaselineSettings


def show_baselines(result: Baselines, settings: BaselineSettings) -> int:
    if settings.quiet:
        return 0
    print_table(f"{result.data}: the same test split for every method", TABLE_COLUMNS,
                [table_row(r) for r in result])
    for note in [f"{r.method}: {r.note}" for r in result if r.note]:
        console.print(note)
    console.print(f"written to {result.folder}/: baselines.json, baselines.csv")
    return 0
