"""`cnnlab serve` prints as it serves (uvicorn's log); nothing is left to show when it stops."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import ServeSettings


def show_served(result: None, settings: ServeSettings) -> int:
    return 0
