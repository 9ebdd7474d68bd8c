"""What every verb's show.py prints with: one console for results on stdout, one table shape."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

# Tables in a log file or pipe get a wide page instead of rich's 80-column default.
console = Console(soft_wrap=True)
if not console.is_terminal:
    console = Console(soft_wrap=True, width=160)


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def say(text: str) -> None:
    """A line of prose under the tables (no rich highlighting of numbers and paths)."""
    console.print(text, highlight=False)


def fraction(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{rest:02d}s"


def error_line(text: str) -> None:
    """One error line on stderr, escape sequences in names shown rather than obeyed."""
    from .errors import printable

    print(f"error: {printable(text)}", file=sys.stderr)
