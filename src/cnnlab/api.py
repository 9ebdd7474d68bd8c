"""The Python API: cnnlab.train(...), cnnlab.load(run), cnnlab.evaluate(run), cnnlab.attack(run)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base.config import (
    CONFIG_SECTIONS,
    SECTION_SHORTHAND,
    TrainConfig,
    apply_overrides,
    flat_key,
    load_config,
)
from .base.errors import CnnlabError

if TYPE_CHECKING:  # the heavy modules (torch and up) load when a function runs, not on import
    from .experiments.compare import Comparison
    from .experiments.table import RunsTable
    from .predict.predictor import Predictor
    from .run.results import AttackMetrics, EvaluationMetrics
    from .train import EpochCallback, Run
    from .tune import TuneResult


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
    from .train.loop import fit

    if resume is not None:
        if lr_find is not None:
            raise CnnlabError("--resume continues with the run's own learning rate; drop --lr-find")
        run = fit(_resumed_config(resume, settings), resume=resume, quiet=quiet,
                  on_epoch_end=on_epoch_end)
        return _after_training(run, quiet)
    if not isinstance(config, TrainConfig):
        config = load_config(config) if config is not None else TrainConfig()
    config = _with_settings(config, settings)
    found = _found_lr(config, lr_find, quiet) if lr_find is not None else None
    run = fit(apply_overrides(config, {"lr": found.suggestion}) if found else config, quiet=quiet,
              on_epoch_end=on_epoch_end)
    if found is not None:  # beside the run it chose the rate of
        from .train.lr_find import title_of, write_finding

        write_finding(found, run.path, title_of(found, run.config))
    return _after_training(run, quiet)


def _found_lr(config: TrainConfig, rule: str, quiet: bool) -> Any:
    """The range test on what `config` would train; says the rate it suggests."""
    from .base.config import LrFindSettings
    from .base.settings import build
    from .train.lr_find import find_lr

    if config.lr is not None:
        raise CnnlabError(f"--lr-find chooses the learning rate; drop --lr {config.lr:g}")
    found, _ = find_lr(config, build(LrFindSettings, {"suggest": rule}), quiet=quiet)
    if not quiet:
        from .base.progress import stderr_console

        others = ", ".join(f"{name} {rate:.2g}" for name, rate in found.suggestions.items()
                           if name != found.rule)
        stderr_console().print(f"lr-find: {found.rule} suggests --lr {found.suggestion:.2g} "
                               f"({others}); training with it", highlight=False)
    return found


def lr_find(config: TrainConfig | str | Path | None = None, *, quiet: bool = False,
            **options: Any) -> Any:
    """The learning-rate range test (fastai's lr_find) on what `train` would train with the same
    settings: the loss against a rate growing from start_lr to end_lr, the model, optimizer and
    data order restored afterwards. Writes lr_find.json and lr_find.png to out= (default
    runs/lr-find-DATA-MODEL).

    Args:
        config: as train's.
        **options: LrFindSettings' (start_lr=1e-7, end_lr=10, steps=100, suggest="valley") and
            training settings by the names of train's flags (data="digits", model="simple").

    Returns the LrFindResult: .finding (.suggestion, .suggestions by rule, the curve), .folder.
    """
    import dataclasses

    from .base.config import LrFindSettings
    from .base.settings import resolve
    from .train.lr_find import run_lr_find

    names = {field.name for field in dataclasses.fields(LrFindSettings)}
    settings = resolve(LrFindSettings, None, {k: v for k, v in options.items() if k in names})
    if not isinstance(config, TrainConfig):
        config = load_config(config) if config is not None else TrainConfig()
    config = _with_settings(config, {k: v for k, v in options.items() if k not in names})
    return run_lr_find(config, settings, quiet=quiet)


def _with_settings(config: TrainConfig, settings: dict[str, Any]) -> TrainConfig:
    """The config with keyword settings applied, by flag name or by section."""
    overrides: dict[str, Any] = {}
    for key, value in settings.items():
        if key in SECTION_SHORTHAND and isinstance(value, str):
            overrides[f"{key}.{SECTION_SHORTHAND[key]}"] = value
        elif key in CONFIG_SECTIONS and isinstance(value, dict):
            overrides.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            overrides[flat_key(key)] = value
    return apply_overrides(config, overrides)


def _after_training(run: Run, quiet: bool) -> Run:
    """What follows training where the settings ask for it: the report (written by its own stage,
    from the run folder training left; only the process that wrote the folder writes it)."""
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


def _calibrate_after_training(run: Run, quiet: bool, say) -> None:
    """Temperature and unknown detector; a run without a validation split says why it has none."""
    from .base.errors import CnnlabError as Refused
    from .calibrate.run import calibrate_run

    try:
        say(calibrate_run(run.path, device=run.config.device, quiet=quiet).describe())
    except Refused as reason:
        say(f"not calibrated: {reason}")


def calibrate(run: str | Path, **options: Any) -> Any:
    """Fit a run's temperature scaling and unknown-image detector on its validation split and
    store them in its model.json; see calibrate.run.calibrate_run for the options (score, keep).
    Returns the CalibrationResult."""
    from .calibrate.run import calibrate_run

    return calibrate_run(run, **options)


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


MACHINE_SETTINGS = ("device", "threads")  # where a run continues, not what it trains


def evaluate(run: str | Path, **options: Any) -> EvaluationMetrics:
    """Evaluate a run (see evaluate.run.evaluate_run for the options); returns its
    EvaluationMetrics, what RUN/evaluate/metrics.json holds."""
    from .evaluate.run import evaluate_run

    return evaluate_run(run, **options).metrics


def attack(run: str | Path, **options: Any) -> AttackMetrics:
    """Robust accuracy of a run against FGSM or PGD for each epsilon (pixel units, [0, 1]), and
    the figures in RUN/attack/; see attack.robustness.attack_run for the options. Returns the
    AttackMetrics behind RUN/attack/metrics.json."""
    from .attack.robustness import attack_run

    return attack_run(run, **options).metrics


def explain(run: str | Path, images: Any = None, **options: Any) -> Any:
    """Explain a run's model on images (paths, PIL images, arrays or tensors; none for `filters`
    and `embedding`): method="gradcam" | "saliency" | ... (see explain.run.explain for the
    options). Returns the Explanation: arrays (heatmaps, feature maps, filters, points) and the
    figures written into RUN/explain/."""
    from .explain.run import explain as run_explain

    return run_explain(run, images, **options)


def export(run: str | Path, **options: Any) -> Any:
    """Export a run to ONNX in RUN/export/ (with int8=True also int8) and measure parity; see
    export.run.export_run for the options. Returns the ExportResult (folder, manifest, passed)."""
    from .export.run import export_run

    return export_run(run, **options)


def report(run: str | Path, **options: Any) -> Path:
    """Write RUN/report.html, one self-contained file that tells the run's story; full=True first
    runs what is missing (evaluate, a quick attack, explanations, the baselines). Returns its path."""
    from .report.build import write_report

    return write_report(run, **options)


def baselines(**options: Any) -> list:
    """Logistic regression, HOG + linear SVM, random forest and PCA + RBF SVM on the same split as a
    run's CNN (run="runs/NAME") or on a dataset (data="digits"); returns their BaselineResults."""
    from .baselines.classic import measure_baselines

    return measure_baselines(**options)


def check(data: str | Path | None = None, **options: Any) -> Any:
    """Check a dataset (a built-in name, a folder or a CSV) for likely label errors, duplicates and
    train/test leaks, and oddities; writes check.json, check.csv and check.html into out= (default
    checks/NAME, or RUN/check with run=RUN) and returns the CheckResult (see check.run.run_check
    for the options)."""
    from .base.config import CheckSettings
    from .base.settings import resolve
    from .check.run import default_folder, run_check, write_check

    settings = resolve(CheckSettings, None, options)
    result = run_check(str(data) if data is not None else None, settings)
    write_check(result, default_folder(result.data, settings))
    return result


def runs(root: str | Path = "runs", **options: Any) -> RunsTable:
    """Every run folder under `root` (searched a few folders deep, as a sweep's trials), with the
    settings that differ among them; sort="test" (or val, date, a setting ...) orders them.
    Returns the RunsTable: .runs (RunRecords), .settings, .records() as plain rows. Reads text
    files only."""
    from .experiments.table import list_runs

    return list_runs(root, **options)


def compare(*runs: str | Path, **options: Any) -> Comparison:
    """Two or more runs side by side: the settings that differ, final metrics, the learning curves
    overlaid, per-class accuracy and, on the same test images, McNemar's exact test for each pair.
    Evaluates runs that lack RUN/evaluate/ (evaluate=False: not); writes compare.json and
    curves.png into `out` (default compare-A-B beside the first run). Returns the Comparison."""
    from .experiments.compare import compare_runs

    return compare_runs(runs, **options)


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
    import dataclasses

    from .base.config import TuneSettings
    from .base.settings import resolve
    from .tune.space import load_tune_config, parse_search

    names = {field.name for field in dataclasses.fields(TuneSettings)}
    settings = resolve(TuneSettings, None, {k: v for k, v in options.items() if k in names})
    space = None
    if isinstance(config, str | Path):
        config, space = load_tune_config(config)
    base = _with_settings(config or TrainConfig(), {k: v for k, v in options.items() if k not in names})
    if settings.search is not None:
        space = parse_search(settings.search, base)
    if space is None:
        raise CnnlabError("say what to search: --search \"lr=1e-4..3e-2:log batch_size=32|64|128\", "
                          "or a search: mapping in the --config YAML")
    if say is None and not settings.quiet:
        from .base.progress import stderr_console

        say = lambda line: stderr_console().print(line, highlight=False)  # noqa: E731
    from .tune.run import run_sweep  # Optuna and torch load once the settings are sound

    return run_sweep(base, space, settings, say or (lambda line: None))


def load(run: str | Path, device: str = "auto", unknown: bool = True,
         engine: str = "auto") -> Predictor:
    """Load a run folder's best model (model.safetensors + model.json) for prediction; an export
    folder (or the .onnx file in one) runs on ONNX Runtime with the same preprocessing. With
    `unknown` (the default) each prediction also says whether the image is one of the model's
    classes, where the run has an unknown-image detector (cnnlab calibrate). `engine`: what runs
    the predictions, "onnx" (ONNX Runtime on a graph exported once into RUN/engine/), "torch",
    or "auto" (onnx on the CPU where its outputs match PyTorch's within 1e-4)."""
    from .predict.predictor import load_predictor

    return load_predictor(run, device, unknown=unknown, engine=engine)
