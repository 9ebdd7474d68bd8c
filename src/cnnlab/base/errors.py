"""Errors a user can cause, and the "did you mean" hint that goes with them.

Every `CnnlabError` reaches the terminal as one line and exit code 2 (see cli.main).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CnnlabError(Exception):
    """A problem with the user's input: bad flag, unknown name, unreadable file."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean X?)' for the closest choice, or '' when none is close."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def unknown(kind: str, name: str, choices: Iterable[str]) -> CnnlabError:
    """Build the error for a name that is not in a registry, listing what is."""
    choices = sorted(choices)
    return CnnlabError(
        f"unknown {kind} {name!r}{suggest(name, choices)}; choose from: {', '.join(choices)}"
    )


def printable(text: str) -> str:
    """`text` safe for a terminal, a figure or a UTF-8 file: control characters (a terminal's
    escape sequences among them) as \\xNN and the lone surrogates of a file name that is not UTF-8
    as \\udcNN, so a hostile name is shown and never obeyed or crashed on."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else
                   c.encode("unicode_escape", "backslashreplace").decode("ascii") for c in text)

