"""`cnnlab baselines`' settings."""

from __future__ import annotations

from dataclasses import dataclass

from ..base.settings import option
from ..config.common import DEVICE_HELP, QUIET_HELP


@dataclass(frozen=True)
class BaselineSettings:
    data: str | None = option(None, "dataset name or folder (default: the run's data)", metavar="DATA")
    run: str | None = option(None, "a run folder: its data and split, and its CNN in the table",
                             metavar="RUN")
    only: str | None = option(None, "some of: logistic, hog-svm, forest, pca-svm (comma-separated)")
    out: str | None = option(None, "results folder (default RUN/baselines, or "
                                   "runs/baselines-DATA)", metavar="DIR")
    threads: int = option(2, "CPU cores the random forest uses", minimum=1, maximum=1024)
    seed: int = option(0, "seed of the random forest, the solvers and the SVM's subsample", minimum=0)
    device: str = option("auto", DEVICE_HELP)
    quiet: bool = option(False, QUIET_HELP)
