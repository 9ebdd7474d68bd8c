"""`cnnlab calibrate` on the terminal: the temperature and the unknown-image threshold fitted."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..base.show import console

if TYPE_CHECKING:
    from .run import CalibrationResult
    from .settings import CalibrateSettings


def show_calibration(result: CalibrationResult, settings: CalibrateSettings) -> int:
    if not settings.quiet:
        console.print(result.describe())
    return 0
