"""`cnnlab tune`'s own settings."""

from __future__ import annotations

from dataclasses import dataclass

from ..base.settings import option

TUNE_METRICS = ("val_acc", "val_loss", "val_robust_acc")  # val_loss is minimized, the others maximized


@dataclass(frozen=True)
class TuneSettings:
    """`cnnlab tune`'s own settings; the training settings of every trial are train's flags."""

    HELP_GROUPS = {"the search": ("search", "trials", "budget", "metric", "pruner", "startup_trials",
                                  "sampler", "sampler_seed", "storage", "study", "trial_processes",
                                  "out", "quiet")}

    search: str | None = option(None, "the settings to search, space-separated: NAME=LOW..HIGH "
                                      "(:log for a log scale, :step=S for a grid) or NAME=A|B|C, "
                                      "e.g. \"lr=1e-4..3e-2:log batch_size=32|64|128\" (or a "
                                      "search: mapping in --config)", metavar="SPACE")
    trials: int = option(20, "trials in the study in all, over every run of the command and every "
                             "worker: run it again to finish the missing ones, with more to add",
                         minimum=1)
    budget: str | None = option(None, "start no trial after this long (90s, 20m, 2h); the one "
                                      "under way finishes", metavar="TIME")
    metric: str = option("val_acc", "what a trial scores: its best epoch's val_acc (maximized), "
                                    "val_loss (minimized) or val_robust_acc (adversarial training)",
                         choices=TUNE_METRICS, kind="metric")
    pruner: str = option("median", "stop a trial after an epoch whose score is below the median of "
                                   "earlier trials' at that epoch (median), by successive halving "
                                   "(hyperband), or never (none)",
                         choices=("median", "hyperband", "none"), kind="pruner")
    startup_trials: int = option(5, "median pruner: trials that finish before any is pruned",
                                 minimum=0)
    sampler: str = option("tpe", "how the next settings are chosen: tpe (Bayesian), random, qmc "
                                 "(quasi-random), gp (Gaussian process)",
                          choices=("tpe", "random", "qmc", "gp"), kind="sampler")
    sampler_seed: int | None = option(None, "seed of the sampler (one worker: a new study "
                                            "tries the same settings again; one taken up again "
                                            "tries new ones); default: random, so workers differ",
                                      minimum=0)
    storage: str | None = option(None, "where the study lives: an SQLAlchemy URL (postgresql://"
                                       "USER:PASSWORD@HOST/DB, mysql://..., sqlite:///FILE) shared by "
                                       "workers on many machines, or journal:FILE, a log file "
                                       "(default: sqlite, OUT/study.db)", metavar="URL")
    study: str | None = option(None, "the study's name in the storage (default: OUT's name)")
    trial_processes: int = option(1, "processes that train each trial together, as `torchrun "
                                     "--nproc-per-node N -m cnnlab train` does (one per GPU; "
                                     "gloo on the CPU); 1 trains each trial in this process",
                                  minimum=1, metavar="N")
    out: str | None = option(None, "the sweep folder: a run folder per trial (trial-007/), "
                                   "trials.csv, best.yaml, figures (default runs/tune-DATA-MODEL)",
                             metavar="DIR")
    quiet: bool = option(False, "print nothing but errors")
    config: str | None = option(None, "YAML run config, which may hold a search: mapping, or a "
                                      "preset; flags override it", metavar="CONFIG")
