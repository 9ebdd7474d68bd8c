"""The one rule of every table the house registers into (verbs, unknown-image scores): a name
taken twice is a mistake in the code, said when it is made."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def register(table: dict[str, T], name: str, entry: T, kind: str) -> T:
    """Add `entry` to `table` under `name`; raises ValueError where the name is taken."""
    if name in table:
        raise ValueError(f"{kind} {name!r} is registered twice")
    table[name] = entry
    return entry
