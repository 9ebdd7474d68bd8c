"""`cnnlab tune`'s function: the settings and the search space checked, then the sweep (Optuna
and torch load only then)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base.errors import CnnlabError
from ..base.settings import resolve
from ..config import TrainConfig
from ..config.files import with_settings
from .settings import TuneSettings
from .space import load_tune_config, parse_search

if TYPE_CHECKING:
    from .run import TuneResult


def tune(config: TrainConfig | str | Path | None = None, *, say: Callable[[str], None] | None = None,
         **options: Any) -> TuneResult:
    """Search training settings on an Optuna study; each trial is a run folder in the sweep folder.

    Args:
        config: the training settings every trial starts from: a TrainConfig, a YAML file (which
            may hold a `search:` mapping), or None for the defaults.
        say: called with a line as each trial starts and ends (default: print them to stderr,
            unless quiet=True).
        **options: TuneSettings' (search="lr=1e-4..3e-2:log batch_size=32|64", trials=20,
            budget="20m", metric, pruner, sampler, storage, study, out, quiet) and training
            settings by the names of train's flags (data="digits", epochs=3, image_size=16).

    Returns the TuneResult: the trials (complete, pruned, failed), the best, the importances and
    the files written (trials.csv, best.yaml, figures). `trials` is the study's total: calling
    again with the same settings runs only the trials still missing."""
    names = {field.name for field in dataclasses.fields(TuneSettings)}
    settings = resolve(TuneSettings, None, {k: v for k, v in options.items() if k in names})
    space = None
    if isinstance(config, str | Path):
        config, space = load_tune_config(config)
    base = with_settings(config or TrainConfig(), {k: v for k, v in options.items() if k not in names})
    if settings.search is not None:
        space = parse_search(settings.search, base)
    if space is None:
        raise CnnlabError("say what to search: --search \"lr=1e-4..3e-2:log batch_size=32|64|128\", "
                          "or a search: mapping in the --config YAML")
    if say is None and not settings.quiet:
        from ..base.progress import stderr_console

        say = lambda line: stderr_console().print(line, highlight=False)  # noqa: E731
    from .run import run_sweep  # Optuna and torch load once the settings are sound

    return run_sweep(base, space, settings, say or (lambda line: None))
