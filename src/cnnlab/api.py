"""The Python API: cnnlab.VERB(...) for every verb of the table, and cnnlab.load(run).

Each function is the verb's own: `cnnlab.evaluate(run, split="val")` runs what `cnnlab evaluate
RUN --split val` runs and returns what it prints (the command shows that result). Most are made
from the verb table (`python_function`: the stage's function with a signature and a docstring
from the verb's settings). The few written here are the facade's work, verbs that run other
stages: train (then calibrate and report), report --full (evaluate, attack, explain and baselines
first) and compare (evaluate the runs that lack it first).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base.errors import CnnlabError
from .base.settings import resolve
from .config import TrainConfig, apply_overrides, load_config
from .config.files import with_settings
from .verbs import VERBS, Verb

if TYPE_CHECKING:  # the heavy modules (torch and up) load when a function runs, not on import
    from .experiments.compare import Comparison
    from .run.predictor import Predictor
    from .train import EpochCallback, Run


def train(config: TrainConfig | str | Path | None = None, *, resume: str | Path | None = None,
          quiet: bool = False, on_epoch_end: EpochCallback | None = None,
          lr_find: str | None = None, **settings: Any) -> Run:
    """Train a CNN and return its Run.

    Args:
        config: a TrainConfig, a YAML file, or None for the defaults.
        resume: a run folder to continue from its last.ckpt (its own config.yaml is used; `epochs`
            may extend it, with a new learning-rate cycle over the added epochs).
        quiet: no progress output.
        on_epoch_end: called as on_epoch_end(model, row) after each epoch (row: its metrics).
        lr_find: "valley", "steep" or "minimum": first run the learning-rate range test and train
            with the rate that rule suggests (RUN/lr_find.png shows the curve); lr must be unset.
        **settings: overrides by the names of the CLI flags, e.g. data="digits", epochs=3,
            model="lenet5", lr=1e-3, image_size=16, flip=False; or by section:
            data={"val_fraction": 0.2}, augment={"flip": False}.
    """
    from .base.distributed import ranks_from_environment
    from .train.loop import fit

    quiet = quiet or not ranks_from_environment().is_main  # under torchrun, rank 0 speaks
    if resume is not None:
        if lr_find is not None:
            raise CnnlabError("--resume continues with the run's own learning rate; drop --lr-find")
        run = fit(_resumed_config(resume, settings), resume=resume, quiet=quiet,
                  on_epoch_end=on_epoch_end)
        return _after_training(run, quiet)
    if not isinstance(config, TrainConfig):
        config = load_config(config) if config is not None else TrainConfig()
    config = with_settings(config, settings)
    found = _found_lr(config, lr_find, quiet) if lr_find is not None else None
    run = fit(apply_overrides(config, {"lr": found.suggestion}) if found else config, quiet=quiet,
              on_epoch_end=on_epoch_end)
    if found is not None:  # beside the run it chose the rate of
        from .train.lr_find import title_of, write_finding

        write_finding(found, run.path, title_of(found, run.config))
    return _after_training(run, quiet)


def _found_lr(config: TrainConfig, rule: str, quiet: bool) -> Any:
    """The range test on what `config` would train; says the rate it suggests."""
    from .train.lr_find import find_lr
    from .train.settings import LrFindSettings

    if config.lr is not None:
        raise CnnlabError(f"--lr-find chooses the learning rate; drop --lr {config.lr:g}")
    found, _ = find_lr(config, resolve(LrFindSettings, None, {"suggest": rule}), quiet=quiet)
    if not quiet:
        from .base.progress import stderr_console

        others = ", ".join(f"{name} {rate:.2g}" for name, rate in found.suggestions.items()
                           if name != found.rule)
        stderr_console().print(f"lr-find: {found.rule} suggests --lr {found.suggestion:.2g} "
                               f"({others}); training with it", highlight=False)
    return found


def _after_training(run: Run, quiet: bool) -> Run:
    """What follows training where the settings ask for it: calibration and the report (each
    written by its own stage, from the run folder training left; only the process that wrote the
    folder writes them)."""
    from .base.distributed import ranks_from_environment

    if run.status == "diverged" or not ranks_from_environment().is_main:
        return run
    from .base.progress import stderr_console

    say = (lambda text: None) if quiet else \
        (lambda text: stderr_console().print(text, highlight=False))
    if run.config.calibrate:
        _calibrate_after_training(run, quiet, say)
    if run.config.report:
        say(f"report: {report(run.path)}")
    return run


def _calibrate_after_training(run: Run, quiet: bool, say: Callable[[str], None]) -> None:
    """Temperature and unknown detector; a run without a validation split says why it has none."""
    from .calibrate.run import calibrate_run

    try:
        with _data_warnings_said_once():
            say(calibrate_run(run.path, device=run.config.device, quiet=quiet).describe())
    except CnnlabError as reason:
        say(f"not calibrated: {reason}")


@contextlib.contextmanager
def _data_warnings_said_once() -> typing.Iterator[None]:
    """Leave out what loading the data warns (each skipped file, what --exclude left out):
    training said it of the same data a moment ago, and calibration loads it again."""
    import logging
    import os

    data = os.path.join(Path(__file__).parent / "data", "")  # the data package's files
    said = lambda record: not record.pathname.startswith(data)  # noqa: E731
    logger = logging.getLogger("cnnlab")
    logger.addFilter(said)
    try:
        yield
    finally:
        logger.removeFilter(said)


MACHINE_SETTINGS = ("device", "threads")  # where a run continues, not what it trains


def _resumed_config(run: str | Path, settings: dict[str, Any]) -> TrainConfig:
    """The run's own config.yaml; `epochs` may change (to extend the run), and where it runs
    (`device`, `threads`: config.yaml records the device used, which another machine may lack)."""
    from .run.folder import CONFIG

    config = load_config(Path(run) / CONFIG)
    others = sorted(set(settings) - {"epochs", *MACHINE_SETTINGS})
    if others:
        raise CnnlabError(f"--resume continues a run with its own config.yaml (only --epochs may "
                          f"change, to extend it, and --device or --threads); drop "
                          f"{', '.join(others)}")
    changes = {key: value for key, value in settings.items() if value is not None}
    return apply_overrides(config, changes) if changes else config


def report(run: str | Path, settings: Any = None, **options: Any) -> Path:
    """Write RUN/report.html, one self-contained file that tells the run's story; full=True first
    runs what is missing (evaluate, a quick attack, explanations, the baselines). Returns its path."""
    from .report.build import write_report
    from .report.settings import ReportSettings
    from .run.folder import read_card

    settings = resolve(ReportSettings, settings, options)
    read_card(run)  # a run folder, or one clear error before any work
    if settings.full:
        _fill_in_report(Path(run), settings.quiet)
    return write_report(run, settings)


def _fill_in_report(run: Path, quiet: bool) -> None:
    """report --full: evaluate, a quick attack, explanations (the hierarchy of features too) and
    the baselines, where missing."""
    from .report.build import explained_images

    if not (run / "evaluate" / "metrics.json").is_file():
        _verb("evaluate")(run, quiet=quiet)
    if not list(run.glob("attack*/metrics.json")):
        _verb("attack")(run, eps="0,0.01,0.03,0.1", limit=500, quiet=quiet)
    explained, explain = run / "explain", _verb("explain")
    for method in ("gradcam", "saliency"):
        if not (explained / f"image0-{method}.png").is_file():  # its own, not a file's (why)
            explain(run, explained_images(run), method=method, quiet=quiet)
    if not (explained / "filters.png").is_file():
        explain(run, method="filters", quiet=quiet)
    if not list(explained.glob("embedding-*.png")):
        explain(run, method="embedding", limit=1000, quiet=quiet)
    if not (explained / "hierarchy" / "hierarchy.json").is_file():
        explain(run, method="hierarchy", limit=1000, quiet=quiet)
    if not (run / "baselines" / "baselines.json").is_file():
        _verb("baselines")(run=str(run), quiet=quiet)


def _verb(name: str) -> Callable[..., Any]:
    """A verb's own function, for the facade's verbs that run other stages first."""
    return VERBS[name].function()


def compare(*runs: str | Path, settings: Any = None, **options: Any) -> Comparison:
    """Two or more runs side by side: the settings that differ, final metrics, the learning curves
    overlaid, per-class accuracy and, on the same test images, McNemar's exact test for each pair.
    Evaluates runs that lack a current RUN/evaluate/ first (evaluate=False: not); writes
    compare.json and curves.png into `out` (default compare-A-B beside the first run)."""
    from .experiments.compare import check_runs, compare_runs, evaluation_plan
    from .experiments.settings import CompareSettings

    settings = resolve(CompareSettings, settings, options)
    todo, notes = evaluation_plan(check_runs(runs)) if settings.evaluate else ([], [])
    evaluated = []
    for path in todo:
        try:
            _verb("evaluate")(path, device=settings.device, quiet=settings.quiet)
            evaluated.append(path)
        except CnnlabError as error:
            notes.append(f"{path}: cannot be evaluated: {error}")
    return compare_runs(*runs, settings=settings, evaluated=evaluated, notes=notes)


def load(run: str | Path, device: str = "auto", unknown: bool = True,
         engine: str = "auto") -> Predictor:
    """Load a run folder's best model (model.safetensors + model.json) for prediction; an export
    folder (or the .onnx file in one) runs on ONNX Runtime with the same preprocessing. With
    `unknown` (the default) each prediction also says whether the image is one of the model's
    classes, where the run has an unknown-image detector (cnnlab calibrate). `engine`: what runs
    the predictions, "onnx" (ONNX Runtime on a graph exported once into RUN/engine/), "torch",
    or "auto" (onnx on the CPU where its outputs match PyTorch's within 1e-4)."""
    from .run.predictor import load_predictor

    return load_predictor(run, device, unknown=unknown, engine=engine)


# The verbs whose function is the stage's own, given the signature and docstring of the verb.
def python_function(verb: Verb) -> Callable[..., Any]:
    """cnnlab.VERB: calls the verb's function; its signature lists the positional arguments and
    every setting as a typed keyword (what help() and editors show), its docstring their help."""

    @functools.wraps(_stub)
    def function(*args: Any, **kwargs: Any) -> Any:
        return verb.function()(*args, **kwargs)

    function.__name__ = function.__qualname__ = verb.python
    function.__module__ = "cnnlab"
    function.__doc__ = _docstring(verb)
    function.__signature__ = _signature(verb)  # type: ignore[attr-defined]
    function.verb = verb  # type: ignore[attr-defined]
    return function


def _stub(*args: Any, **kwargs: Any) -> Any:  # what functools.wraps copies nothing of note from
    raise NotImplementedError


def _signature(verb: Verb) -> inspect.Signature:
    hints = typing.get_type_hints(verb.settings)
    parameters = [inspect.Parameter(argument.name, inspect.Parameter.VAR_POSITIONAL
                                    if argument.variadic else inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                    default=inspect.Parameter.empty if argument.nargs in (None, "+")
                                    or argument.variadic else argument.default)
                  for argument in verb.arguments]
    if not verb.trains:  # a training verb's keywords are its own and train's, no settings object
        parameters.append(inspect.Parameter("settings", inspect.Parameter.KEYWORD_ONLY, default=None,
                                            annotation=f"{verb.settings.__name__} | None"))
    parameters += [inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY,
                                     default=field.default, annotation=hints[field.name])
                   for field in dataclasses.fields(verb.settings)]
    if verb.trains:
        parameters.append(inspect.Parameter("training", inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(parameters)


def _docstring(verb: Verb) -> str:
    lines = [f"{verb.help[0].upper()}{verb.help[1:]} (as `cnnlab {verb.name}`).", "", "Args:"]
    lines += [f"    {argument.name}: {argument.help}" for argument in verb.arguments]
    if not verb.trains:
        lines.append(f"    settings: a {verb.settings.__name__}; the keywords below override its "
                     f"fields")
    lines += [f"    {field.name}: {field.metadata.get('help', '')}"
              for field in dataclasses.fields(verb.settings)]
    if verb.trains:
        lines.append("    **training: train's settings by the names of its flags (data=\"digits\", "
                     "epochs=3, image_size=16) or by section (data={\"val_fraction\": 0.2})")
    return "\n".join(lines)


def functions() -> dict[str, Callable[..., Any]]:
    """Every verb's Python function by its name: the facade's own above, the rest made here."""
    written = {"train": train, "report": report, "compare": compare}
    return {verb.python: written.get(verb.python) or python_function(verb)
            for verb in VERBS.values()}


globals().update({name: function for name, function in functions().items()
                  if name not in globals()})
