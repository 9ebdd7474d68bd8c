"""How `cnnlab train` and `cnnlab lr-find` run; what they train is config.TrainConfig's."""

from __future__ import annotations

from dataclasses import dataclass

from ..base.settings import option
from ..config import preset_names

LR_RULES = ("valley", "steep", "minimum")  # the learning-rate finder's suggestions (fastai's)
CONFIG_HELP = f"YAML run config, or a preset: {', '.join(preset_names())}; flags override it"
QUIET = "print nothing but errors"


@dataclass(frozen=True)
class TrainRunSettings:
    """How `cnnlab train` runs: from which config, continuing which run; the training settings
    themselves are config.TrainConfig's flags."""

    config: str | None = option(None, CONFIG_HELP, metavar="CONFIG")
    resume: str | None = option(None, "continue RUN from its last.ckpt", metavar="RUN")
    # A flag of its own, not a value of --lr: --lr stays a number, and config.yaml records the
    # rate found, so the run reproduces without the search.
    lr_find: str | None = option(None, "first run the learning-rate range test (cnnlab lr-find) "
                                       "and train with the rate it suggests: valley (the "
                                       "default), steep or minimum", choices=LR_RULES,
                                 kind="suggestion rule", metavar="RULE", bare="valley")
    quiet: bool = option(False, QUIET)


@dataclass(frozen=True)
class LrFindSettings:
    """The learning-rate range test's own settings (`cnnlab lr-find`); what it trains is train's."""

    HELP_GROUPS = {"the range test": ("start_lr", "end_lr", "steps", "suggest")}

    start_lr: float = option(1e-7, "the sweep's first learning rate", above=0)
    end_lr: float = option(10.0, "the sweep's last learning rate", above=0)
    steps: int = option(100, "steps of the sweep; it stops early once the smoothed loss passes 4x "
                             "its minimum", minimum=10)
    suggest: str = option("valley", "the rule whose rate is suggested: valley (the longest fall "
                                    "of the loss, fastai's default), steep (its steepest point), "
                                    "minimum (a tenth of the rate of least loss)",
                          choices=LR_RULES, kind="suggestion rule")
    config: str | None = option(None, CONFIG_HELP, metavar="CONFIG")
    quiet: bool = option(False, QUIET)
