"""Progress of long work, one style for every verb: a rich bar on stderr when it is a terminal,
nothing in log files and pipes (Lightning #8975), nothing at all with quiet."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

Advance = Callable[[int], None]


def stderr_console() -> Console:
    return Console(stderr=True, soft_wrap=True)


def progress_bar(label: str, *extra: ProgressColumn, console: Console | None = None,
                 disable: bool = False) -> Progress:
    """The bar every verb shows: label, bar, done/total, any extra columns, elapsed, remaining."""
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), *extra,
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console or stderr_console(),
                    transient=True, disable=disable)


@contextmanager
def tracked(label: str, total: int, *, quiet: bool = False) -> Iterator[Advance]:
    """A bar for `total` items while the block runs; the block calls advance(n) as it goes."""
    with progress_bar(label, disable=quiet or not sys.stderr.isatty()) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
