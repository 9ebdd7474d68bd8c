"""`cnnlab attack`'s settings."""

from __future__ import annotations

from dataclasses import dataclass

from ..base.settings import option
from ..config.common import DATA_HELP, DEVICE_HELP, EVAL_BATCH, QUIET_HELP, SPLITS

EPS_UNITS = ("Epsilon is in pixel units of the original image, [0, 1], before normalization; "
             "adversarial images are clipped to [0, 1].")


@dataclass(frozen=True)
class AttackSettings:
    method: str = option("pgd", "fgsm | pgd (with a random start)", choices=("fgsm", "pgd"),
                         kind="attack method")
    eps: str | tuple[float, ...] = option("0,0.01,0.03,0.1", "epsilons, comma-separated. " + EPS_UNITS)
    steps: int = option(10, "PGD steps", minimum=1)
    step_size: float | None = option(None, "PGD step length in the chosen norm (default 2.5 eps / "
                                           "steps)", above=0)
    norm: str = option("linf", "linf | l2 (l2: PGD only)", choices=("linf", "l2"), kind="norm")
    data: str | None = option(None, DATA_HELP, metavar="DATA")
    split: str = option("test", "the split attacked", choices=SPLITS, kind="split")
    limit: int | None = option(1000, "attack the first N images of the split", minimum=1)
    seed: int = option(0, "seed of PGD's random start", minimum=0)
    batch_size: int = option(EVAL_BATCH, "images per batch", minimum=1)
    out: str | None = option(None, "results folder (default RUN/attack; another attack, split or "
                                   "data gets its own: RUN/attack-fgsm, RUN/attack-val ...)",
                             metavar="DIR")
    device: str = option("auto", DEVICE_HELP)
    quiet: bool = option(False, QUIET_HELP)
