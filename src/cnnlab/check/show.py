"""`cnnlab check` on the terminal: the findings, the worst of each, and how to train without them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..base.show import console, print_table
from .run import summary_rows, worst_rows, written_files

if TYPE_CHECKING:
    from .findings import CheckResult
    from .settings import CheckSettings


def show_check(result: CheckResult, settings: CheckSettings) -> int:
    if settings.quiet:
        return 0
    print_table(f"{result.data}: {result.summary['read']:,} images checked",
                ["finding", "count", "what"], summary_rows(result))
    for title, columns, rows in worst_rows(result):
        print_table(title, columns, rows)
    console.print(f"written to {result.folder}/: {', '.join(written_files(result))}; train without "
                  f"the rows marked exclude: cnnlab train --data {result.data} --exclude "
                  f"{result.folder / 'check.csv'}")
    return 0
