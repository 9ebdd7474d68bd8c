"""What each CLI verb does with its parsed arguments: call the library, print the result."""

from __future__ import annotations

import argparse
import dataclasses
import glob
import re
import sys
import textwrap
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from .base.errors import CnnlabError, printable, suggest
from .base.fileio import is_dir
from .base.settings import build, values_from

# Tables in a log file or pipe get a wide page instead of rich's 80-column default.
console = Console(soft_wrap=True)
if not console.is_terminal:
    console = Console(soft_wrap=True, width=160)

_TRAIN_OPTIONS = ("config", "resume", "quiet")
_PARSER_KEYS = ("verb", "command", "settings")


def _settings(args: argparse.Namespace):
    """The verb's settings instance from its parsed flags."""
    return build(args.settings, values_from(args, args.settings))


def run_train(args: argparse.Namespace) -> int:
    from .api import train

    options = {k: v for k, v in vars(args).items() if k not in _PARSER_KEYS}
    config, resume, quiet = (options.pop(key, None) for key in _TRAIN_OPTIONS)
    lr_find = options.pop("lr_find", None)
    nested = _by_section(options)
    from .base.distributed import ranks_from_environment

    quiet = bool(quiet) or not ranks_from_environment().is_main  # under torchrun, rank 0 speaks
    run = train(config, resume=resume, quiet=quiet, lr_find=lr_find, **nested)
    _print_run(run, quiet)
    return 1 if run.status == "diverged" else 0


def run_lr_find(args: argparse.Namespace) -> int:
    from .api import lr_find

    options = {k: v for k, v in vars(args).items() if k not in _PARSER_KEYS}
    config, quiet = options.pop("config", None), bool(options.pop("quiet", False))
    result = lr_find(config, quiet=quiet, **_by_section(options))
    if quiet:
        return 0
    found = result.finding
    _print_table(f"learning-rate range test: {len(found.lrs)} steps from {found.lrs[0]:.0e}, "
                 f"{found.stopped}", ["rule", "suggested rate", "how it is read"],
                 [[name + (" (taken)" if name == found.rule else ""), f"{rate:.2e}", _RULE_TEXT[name]]
                  for name, rate in found.suggestions.items()])
    console.print(f"train with it: cnnlab train ... --lr {found.suggestion:.2g}   (curve: "
                  f"{result.folder / 'lr_find.png'})", highlight=False)
    return 0


_RULE_TEXT = {"valley": "a little past the first third of the longest fall of the loss",
              "steep": "where the loss falls fastest",
              "minimum": "a tenth of the rate of least loss"}


def _by_section(options: dict) -> dict:
    """Parsed flags as train's keywords: {'data.image_size': 8} -> {'data': {'image_size': 8}}."""
    nested: dict = {}
    for key, value in options.items():
        section, _, name = key.rpartition(".")
        (nested.setdefault(section, {}) if section else nested)[name] = value
    return nested


def run_tune(args: argparse.Namespace) -> int:
    from .api import tune

    options = {k: v for k, v in vars(args).items() if k not in _PARSER_KEYS}
    config = options.pop("config", None)
    result = tune(config, **_by_section(options))
    if not options.get("quiet"):
        _print_tune(result)
    failed_only = result.best is None and any(r.state == "failed" for r in result.trials)
    return 1 if failed_only else 0


def _print_tune(result) -> None:
    from .experiments.table import duration

    names = result.space.names()
    table = Table(title=f"study {result.study!r}: {result.counted} of {result.total} trials "
                        f"({result.stopped})", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ["trial", "state", result.metric, *names, "epochs", "time", "run folder"]:
        table.add_column(column)
    for r in result.trials:
        best = result.best is not None and r.number == result.best.number
        table.add_row(str(r.number), f"{r.state}, {r.reason}" if r.reason else r.state,
                      _metric(result.metric, r.value), *(_param(r.params.get(n)) for n in names),
                      str(r.epochs), duration(r.seconds), r.run or "-",
                      style="bold green" if best else None)
    console.print(table)
    if result.importances:
        console.print("importance of each setting (Optuna's PED-ANOVA over the completed trials): "
                      + ", ".join(f"{k} {v:.2f}" for k, v in result.importances.items()),
                      highlight=False)
    else:
        console.print(f"importance of each setting: {result.importance_note}", highlight=False)
    if result.best is not None:
        b = result.best
        console.print(f"best: trial {b.number}, {result.metric} {_metric(result.metric, b.value)}: "
                      + " ".join(f"{n}={_param(b.params.get(n))}" for n in names), highlight=False)
    console.print(f"written to {result.folder}/: {', '.join(result.files)}"
                  + (f"; train the best: cnnlab train --config {result.folder / 'best.yaml'}"
                     if "best.yaml" in result.files else ""), highlight=False)


def _metric(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if metric == "val_loss" else f"{value:.2%}"


def _param(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else ("-" if value is None else str(value))


def _print_run(run, quiet: bool) -> None:
    minutes, seconds = divmod(run.seconds, 60)
    took = f"{int(minutes)}m{seconds:04.1f}s" if minutes else f"{seconds:.1f}s"
    rows = [("status", run.status), ("best epoch", str(run.best_epoch)),
            ("val accuracy", f"{run.best_val_accuracy:.2%}" if run.best_val_accuracy is not None
             else "no validation split"),
            ("test accuracy", f"{run.test_accuracy:.2%}" if run.test_accuracy is not None else "-"),
            ("time", took), ("run folder", str(run.path))]
    if quiet:
        return
    table = Table(title="training finished", show_header=False)
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


def run_evaluate(args: argparse.Namespace) -> int:
    from .evaluate.run import evaluate_run

    settings = _settings(args)
    result = evaluate_run(args.run, settings)
    if settings.quiet:
        return 0
    m = result.metrics
    rows = [["images", f"{m.images:,}"], ["loss", f"{m.loss:.4f}"],
            ["accuracy (top-1)", f"{m.accuracy:.2%}"]]
    if m.top5_accuracy is not None:
        rows.append(["top-5 accuracy", f"{m.top5_accuracy:.2%}"])
    rows += [["macro F1", f"{m.macro_avg.f1:.4f}"], ["weighted F1", f"{m.weighted_avg.f1:.4f}"],
             ["macro AUROC", _fraction(m.macro_auroc)],
             ["macro average precision", _fraction(m.macro_average_precision)],
             ["calibration error (ECE, 15 bins)", f"{m.ece:.4f}"]]
    held = "" if m.held_out else " (NOT held out: the model was fitted on it)"
    _print_table(f"{m.data} {m.split} split{held}", ["metric", "value"], rows)
    _print_per_class(m)
    if m.translation:
        _print_table("translation invariance: every image shifted by N pixels",
                     ["shift (px)", "accuracy"],
                     [[str(r.shift), f"{r.accuracy:.2%}"] for r in m.translation])
    if result.open_set is not None:
        _print_open_set(result.open_set)
    if args.top_losses is not None and result.top_losses:  # asked for by name: the table too
        from .evaluate.top_losses import TABLE_COLUMNS, table_rows

        _print_table(f"top losses: the {len(result.top_losses)} images of highest loss",
                     TABLE_COLUMNS, table_rows(result.top_losses))
    console.print(f"written to {result.folder}/: metrics.json, per_class.csv, predictions.csv, "
                  f"thresholds.csv, confusion_matrix.csv/.png, reliability.png, mistakes.png, "
                  f"pr_curves.png, roc_curves.png"
                  f"{', top_losses.png' if result.top_losses else ''}"
                  f"{', shift.png' if m.translation else ''}"
                  f"{', unknown.json, unknown_scores.png' if result.open_set else ''}")
    return 0


def _print_open_set(open_set) -> None:
    """evaluate --unknown: each score's AUROC and FPR at 95% TPR, and the run's own detector."""
    _print_table(f"unknown images: {open_set.known:,} known (this split) against "
                 f"{open_set.unknown:,} unknown", ["score", "AUROC", "FPR at 95% TPR"],
                 [[s.score + (" (the run's detector)" if s.score == open_set.detector else ""),
                   f"{s.auroc:.4f}", f"{s.fpr_at_95_tpr:.2%}"] for s in open_set.scores])
    if open_set.detector is not None:
        console.print(f"with the run's threshold: {open_set.unknown_refused:.1%} of the unknown "
                      f"images called unknown, {open_set.known_kept:.1%} of the known kept")


def _fraction(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _print_per_class(m) -> None:
    """Precision, recall, F1 and the areas under the curves; then, per class, the probability
    threshold that reaches each target precision and the recall it keeps."""
    from .run.results import TARGET_PRECISIONS

    auc = {row.name: row for row in m.per_class_auc}
    rows = []
    for r in m.per_class:
        areas = auc.get(r.name)
        rows.append([r.name, f"{r.precision:.3f}", f"{r.recall:.3f}", f"{r.f1:.3f}", str(r.support),
                     _fraction(areas.auroc if areas else None, 3),
                     _fraction(areas.average_precision if areas else None, 3)])
    _print_table("per class", ["class", "precision", "recall", "F1", "support", "AUROC", "AP"], rows)
    if m.thresholds:
        _print_table("thresholds: a class's probability from which its precision reaches the "
                     "target, and the recall kept",
                     ["class", *(f"precision {t:g}" for t in TARGET_PRECISIONS)],
                     [[row.name, *(_threshold_cell(row.at(t)) for t in TARGET_PRECISIONS)]
                      for row in m.thresholds])


def _threshold_cell(row) -> str:
    if row is None or row.threshold is None:
        return "out of reach"
    return f"{row.threshold:.3f} (recall {row.recall:.0%})"


def run_predict(args: argparse.Namespace) -> int:
    from .predict.predictor import expand_inputs, load_predictor
    from .predict.thresholds import min_probability

    settings = _prediction_settings(_settings(args))
    predictor = load_predictor(args.run, settings.device, unknown=settings.unknown,
                               engine=settings.engine)
    found = expand_inputs(args.inputs)
    if not found.images and not found.videos:
        if len(found.missing) == len(args.inputs):  # nothing named exists
            raise CnnlabError(f"{found.missing[0].input}: {found.missing[0].reason}")
        raise CnnlabError(f"no images or videos found in {' '.join(args.inputs)}")
    gate = min_probability(args.run, settings, predictor.class_names)  # errors before the work
    results, failures = _collect_predictions(predictor, found, settings)
    if gate is not None:
        results = gate.apply(results)
    for failure in failures:
        print(f"error: {printable(failure.input)}: {printable(failure.reason)}", file=sys.stderr)
    _emit_predictions(results, settings)
    return 1 if failures else 0


PREDICTION_FORMATS = {".json": "json", ".csv": "csv"}


def _prediction_settings(settings):
    """The format from --out's extension unless --format names one; --out must be a file."""
    out, chosen = settings.out, settings.format
    if out is None:
        return settings if chosen else dataclasses.replace(settings, format="table")
    if is_dir(out):
        raise CnnlabError(f"--out {out} is a folder; give a file name, e.g. "
                          f"{out.rstrip('/')}/predictions.{chosen or 'csv'}")
    inferred = PREDICTION_FORMATS.get(Path(out).suffix.lower())
    if chosen in (None, "table") and inferred is None:
        raise CnnlabError(f"--out {out}: name a .json or .csv file, or add --format json or csv")
    return dataclasses.replace(settings, format=chosen if chosen not in (None, "table") else inferred)


def _collect_predictions(predictor, found, settings) -> tuple[list, list]:
    from .predict.predictor import Failure, predict_files, predict_video

    results, failures = [], list(found.missing)
    for item in predict_files(predictor, found.images, settings.topk, settings.batch_size,
                              settings.workers):
        (failures if isinstance(item, Failure) else results).append(item)
    for video in found.videos:
        try:
            frames, clip = predict_video(predictor, video, settings.fps, settings.topk)
        except CnnlabError as error:
            failures.append(Failure(str(video), str(error).split(": ", 1)[-1]))
            continue
        results.extend([*frames, clip])
    return results, failures


def _emit_predictions(results: list, settings) -> None:
    from .base.fileio import atomic_write_text

    if settings.format == "table":
        if results:  # every input failed: their error lines say it all
            _print_prediction_table(results)
        return
    text = _predictions_json(results) if settings.format == "json" else _predictions_csv(results)
    if settings.out:
        atomic_write_text(settings.out, text)
        console.print(f"{len(results)} prediction{'s' * (len(results) != 1)} written to "
                      f"{settings.out}")
    else:
        sys.stdout.write(text)


def _label(result) -> str:
    name = printable(result.input)  # a file name's escape sequences are shown, not obeyed
    if result.frames is not None:
        return f"{name} (clip, {result.frames} frames)"
    if result.frame is not None:
        return f"{name} @ {result.time:.2f}s"
    return name


def _print_prediction_table(results: list) -> None:
    rows = [[_label(r), f"unknown (closest: {r.top[0].name})" if r.is_unknown else r.top[0].name,
             f"{r.top[0].probability:.1%}",
             ", ".join(f"{s.name} {s.probability:.1%}" for s in r.top[1:])] for r in results]
    _print_table("predictions", ["input", "class", "probability", "next"], rows)


def _predictions_json(results: list) -> str:
    import json

    # allow_nan=False: a NaN would make the file invalid JSON (loading refuses such weights anyway)
    return json.dumps([r.to_dict() for r in results], indent=2, allow_nan=False) + "\n"


def _predictions_csv(results: list) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    gated = any(r.accepted is not None for r in results)  # --min-prob / --min-precision
    detected = any(r.known is not None for r in results)  # the model's unknown detector
    writer.writerow(["input", "frame", "time", "rank", "class", "index", "probability",
                     *(["accepted"] if gated else []),
                     *(["known", "unknown_score"] if detected else [])])
    for r in results:
        frame = "clip" if r.frames is not None else ("" if r.frame is None else r.frame)
        for rank, score in enumerate(r.top, start=1):
            first = rank == 1
            writer.writerow([r.input, frame, "" if r.time is None else r.time, rank, score.name,
                             score.index, score.probability,
                             *([r.accepted if first else ""] if gated else []),
                             *(([r.known, r.unknown_score] if first else ["", ""])
                               if detected else [])])
    return buffer.getvalue()


def run_explain(args: argparse.Namespace) -> int:
    from .base.config import explain_methods
    from .explain import describe_layers, explain

    if args.list_layers:
        _print_table("layers (--layer takes a name or, as in cnnlab summary, a #)",
                     ["#", "layer", "name", "kind", "output"],
                     [[str(layer.position or ""), layer.text, layer.name, layer.kind,
                       "x".join(map(str, layer.output_shape))]
                      for layer in describe_layers(args.run)])
        return 0
    settings = _settings(args)
    methods = explain_methods(settings.method)
    if not args.images and "all" in settings.method:  # 'all' without images: what needs none
        methods = [m for m in methods if m in ("filters", "embedding")]
    for method in methods:
        result = explain(args.run, args.images, settings, method=method)
        for path in [] if settings.quiet else result.figures:
            console.print(f"{method}: {path}")
    return 0


def run_attack(args: argparse.Namespace) -> int:
    from .attack.robustness import attack_run

    settings = _settings(args)
    result = attack_run(args.run, settings)
    if settings.quiet:
        return 0
    m = result.metrics
    attack = f"PGD, {m.norm}, {m.steps} steps" if m.method == "pgd" else f"FGSM, {m.norm}"
    _print_table(f"{attack}: {m.data} {m.split} split, first {m.images:,} images, "
                 f"clean accuracy {m.clean_accuracy:.2%}",
                 ["eps", "robust accuracy", "fooled"],
                 [[f"{r.eps:g}", f"{r.robust_accuracy:.2%}",
                   f"{m.fooled(r):.1%}" if m.fooled(r) is not None else "-"] for r in m.results])
    console.print("eps in pixel units of the image in [0, 1]; fooled: share of the correctly "
                  "classified images that the attack turns wrong")
    console.print(f"written to {result.folder}/: metrics.json, robust_accuracy.png, examples.png")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from .export import export_run

    settings = _settings(args)
    result = export_run(args.run, settings)
    if not settings.quiet:
        _print_parity(result)
    if not result.passed and settings.check:
        print("error: parity misses its targets (see above); --no-check exports anyway",
              file=sys.stderr)
        return 1
    return 0


def _print_parity(result) -> None:
    fp32, int8 = result.manifest.parity.fp32, result.manifest.parity.int8
    rows = [["images", f"{fp32.images:,}", ""],
            ["fp32 ONNX vs PyTorch: max |logit difference|",
             f"{fp32.max_abs_logit_difference:.2e}", "<= 1e-4"],
            ["fp32 ONNX vs PyTorch: top-1 agreement", f"{fp32.top1_agreement:.2%}", "100%"],
            ["accuracy: PyTorch / fp32 ONNX",
             f"{fp32.eager_accuracy:.2%} / {fp32.onnx_accuracy:.2%}", ""]]
    if int8 is not None:
        rows += [["accuracy: int8 ONNX", f"{int8.int8_accuracy:.2%} "
                  f"({int8.accuracy_difference * 100:+.2f} points)", ">= -1 point"],
                 ["int8 vs fp32: top-1 agreement", f"{int8.top1_agreement:.2%}", ""],
                 ["int8 reduce_range", str(int8.reduce_range), ""]]
    _print_table(f"parity ({result.manifest.exporter} exporter, opset {result.manifest.opset})",
                 ["check", "measured", "target"], rows)
    sizes = ", ".join(f"{name} ({(result.folder / name).stat().st_size / 1e6:.2f} MB)"
                      for name in result.manifest.files.values())
    console.print(f"written to {result.folder}/: {sizes}, export.json")


def run_serve(args: argparse.Namespace) -> int:
    from .serve.app import run_server

    run_server(args.run, _settings(args))
    return 0


def _parse_input(text: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)x(\d+)", text.strip().lower())
    if not match:
        raise CnnlabError(f"--input must look like 1x28x28 (channels x height x width), got {text!r}")
    return tuple(int(g) for g in match.groups())  # type: ignore[return-value]


def run_summary(args: argparse.Namespace) -> int:
    from .models.summary import SUMMARY_COLUMNS, human, summarize, summary_rows
    from .run.folder import read_card

    model, shape, classes, name = args.model, (1, 28, 28), 10, None
    if is_dir(model):
        card = read_card(model)
        model, shape, classes, name = (card.architecture, card.input.shape, card.num_classes,
                                       f"{card.name} (run {Path(args.model).name})")
    shape = _parse_input(args.input) if args.input else shape
    if args.classes is not None and args.classes < 2:
        raise CnnlabError(f"--classes must be at least 2, got {args.classes}")
    summary = summarize(model, shape, args.classes or classes)
    table = Table(title=f"{name or summary.name} on {'x'.join(map(str, shape))} input, "
                        f"{args.classes or classes} classes", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)
    for column in SUMMARY_COLUMNS:
        table.add_column(column, justify="left" if column == "layer" else "right")
    for row in summary_rows(summary):
        table.add_row(*row)
    console.print(table)
    conv, dense = summary.sharing
    lines = [f"total: {summary.params:,} parameters, {human(summary.flops)} FLOPs "
             f"({human(summary.flops / 2)} multiply-adds) per image"]
    if conv:
        lines.append(f"parameter sharing: the conv layers use {conv:,} parameters; fully connected "
                     f"layers with the same input and output sizes would need {dense:,} "
                     f"({dense / conv:,.0f}x more)")
    console.print("\n".join(textwrap.fill(line, 80) for line in lines))
    return 0


def run_datasets(args: argparse.Namespace) -> int:
    from .data import list_datasets
    from .data.builtin import download

    if args.download:
        download(args.download)
    rows = [[entry.name, "yes" if entry.is_present() else "no", entry.description, entry.where()]
            for entry in list_datasets()]
    rows.append(["PATH/", "-", "your folder: PATH/<class>/*.png, or PATH/{train,val,test}/<class>/",
                 "--data PATH"])
    rows.append(["FILE.csv", "-", "your CSV manifest: path,label[,split] rows", "--data FILE.csv"])
    _print_table("datasets", ["name", "here", "description", "location"], rows)
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from .calibrate.run import calibrate_run

    settings = _settings(args)
    result = calibrate_run(args.run, settings)
    if not settings.quiet:
        console.print(result.describe())
    return 0


def run_report(args: argparse.Namespace) -> int:
    from .report.build import write_report

    settings = _settings(args)
    path = write_report(args.run, settings)
    if not settings.quiet:
        console.print(f"written to {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from .check.run import (
        default_folder,
        run_check,
        summary_rows,
        worst_rows,
        write_check,
        written_files,
    )

    settings = _settings(args)
    result = run_check(args.data, settings)
    folder = write_check(result, default_folder(result.data, settings))
    if settings.quiet:
        return 0
    _print_table(f"{result.data}: {result.summary['read']:,} images checked",
                 ["finding", "count", "what"], summary_rows(result))
    for title, columns, rows in worst_rows(result):
        _print_table(title, columns, rows)
    console.print(f"written to {folder}/: {', '.join(written_files(result))}; train without the "
                  f"rows marked exclude: cnnlab train --data {result.data} --exclude "
                  f"{folder / 'check.csv'}")
    return 0


def run_baselines(args: argparse.Namespace) -> int:
    from .baselines.classic import TABLE_COLUMNS, measure_baselines, table_row, write_baselines

    settings = _settings(args)
    results = measure_baselines(settings)
    data = settings.data or Path(settings.run).name
    folder = Path(settings.out) if settings.out else (
        Path(settings.run) / "baselines" if settings.run
        else Path("runs") / f"baselines-{Path(data.rstrip('/')).name}")
    write_baselines(results, folder, data)
    if settings.quiet:
        return 0
    _print_table(f"{data}: the same test split for every method", TABLE_COLUMNS,
                 [table_row(dataclasses.asdict(r)) for r in results])
    for note in [f"{r.method}: {r.note}" for r in results if r.note]:
        console.print(note)
    console.print(f"written to {folder}/: baselines.json, baselines.csv")
    return 0


def run_runs(args: argparse.Namespace) -> int:
    from .base.fileio import atomic_write_text
    from .experiments.table import list_runs, output_format, table_columns, table_rows, to_csv, to_json

    settings = _settings(args)
    chosen = output_format(settings)
    table = list_runs(args.root, settings)
    for run in table.runs:
        if run.problem:
            print(f"warning: {run.problem}", file=sys.stderr)
    if chosen == "table":
        if not table.runs:
            console.print(f"no run folders under {args.root} (train one: cnnlab train)")
            return 0
        compact = Table(title=f"{len(table.runs)} run{'s' * (len(table.runs) != 1)} under "
                              f"{args.root}", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        for column in table_columns(table):
            compact.add_column(column)
        for row in table_rows(table):
            compact.add_row(*row)
        console.print(compact)
        return 0
    text = to_json(table) if chosen == "json" else to_csv(table)
    if settings.out:
        atomic_write_text(settings.out, text)
        console.print(f"{len(table.runs)} runs written to {settings.out}")
    else:
        sys.stdout.write(text)
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from .experiments.compare import compare_runs

    settings = _settings(args)
    comparison = compare_runs(args.runs, settings)
    if not settings.quiet:
        _print_comparison(comparison)
    return 0


def _print_comparison(comparison) -> None:
    from .experiments.records import setting_label
    from .experiments.table import duration, percent, show_setting

    names, runs = list(comparison.names), comparison.runs
    for run in comparison.evaluated:
        console.print(f"evaluated {run} on its test split first (as `cnnlab evaluate {run}`)",
                      highlight=False)
    if comparison.settings:
        _print_table("settings that differ", ["setting", *names],
                     [[setting_label(key), *(show_setting(run.settings.get(key), bool(run.settings))
                                             for run in runs)] for key in comparison.settings])
    else:
        console.print("the runs have the same settings")
    _print_table("results", ["", *names], [
        ["best val accuracy", *(percent(run.best_val_accuracy) for run in runs)],
        ["test accuracy", *(percent(run.test_accuracy) for run in runs)],
        ["epochs", *(str(run.epochs) for run in runs)],
        ["time", *(duration(run.seconds) for run in runs)],
        ["status", *(run.status for run in runs)]])
    classes = comparison.class_names()
    if classes:
        _print_table("per-class accuracy on the test split (recall)", ["class", *names],
                     [[name, *(percent(s.class_accuracy.get(name)) if s else "-"
                               for s in comparison.scores)] for name in classes])
    if comparison.pairs:
        _print_pairs(comparison.pairs)
    for note in comparison.notes:
        console.print(f"note: {note}", highlight=False)
    console.print(f"written to {comparison.folder}/: compare.json, curves.png")


def _print_pairs(pairs) -> None:
    """Each pair of runs scored on the same test images: who got which right, and the test."""
    _print_table("pairs of runs scored on the same test images",
                 ["run A", "run B", "images", "both right", "A alone right", "B alone right", "both wrong",
                  "disagree", "McNemar p", "verdict (5% level)"],
                 [[p.first, p.second, f"{p.images:,}", f"{p.both_right:,}", f"{p.only_first:,}",
                   f"{p.only_second:,}", f"{p.both_wrong:,}",
                   f"{p.disagree:,} ({p.disagree / p.images:.1%})", f"{p.p_value:.3g}",
                   "they differ" if p.significant else "no significant difference"]
                  for p in pairs])
    console.print("disagree: images the two runs give different classes; McNemar's exact test "
                  "counts the images only one of them gets right" +
                  ("; p per pair, not adjusted for the number of pairs" if len(pairs) > 1 else ""),
                  highlight=False)


def run_models(args: argparse.Namespace) -> int:
    from .models import list_models
    from .models.summary import human, summarize

    pattern = args.pattern
    if pattern.startswith("timm:"):
        return _list_timm_models(pattern.removeprefix("timm:"))
    entries = list_models(pattern if glob.has_magic(pattern) else f"*{pattern}*")
    if not entries:
        names = [entry.name for entry in list_models()]
        raise CnnlabError(f"no named network matches {pattern!r}{suggest(pattern, names)}; the "
                          f"networks: {', '.join(names)} (timm's: cnnlab models 'timm:*{pattern}*')")
    summaries = [summarize(entry.name, (1, 28, 28), 10) for entry in entries]
    _print_table("named networks, sized for 1x28x28 images and 10 classes",
                 ["name", "description", "params", "FLOPs"],
                 [[entry.name, entry.description, human(summary.params), human(summary.flops)]
                  for entry, summary in zip(entries, summaries, strict=True)])
    console.print("layers of one: cnnlab summary NAME; your own network: cnnlab layers; timm's: "
                  "cnnlab models 'timm:*resnet*'")
    return 0


def _list_timm_models(pattern: str) -> int:
    import timm

    names = timm.list_models(pattern or "*")
    if not names:
        raise CnnlabError(f"no timm model matches {pattern!r}; try a wildcard, e.g. "
                          f"cnnlab models 'timm:*{pattern}*'")
    pretrained = set(timm.list_models(pattern or "*", pretrained=True))
    with_weights = {name.split(".")[0] for name in pretrained}
    console.print(f"{len(names)} timm models match {pattern!r} (* has ImageNet weights, "
                  f"downloaded from the Hugging Face hub on first use):")
    console.print(", ".join(f"{name}{'*' * (name in with_weights)}" for name in names))
    console.print("use one: cnnlab train --model timm:NAME [--pretrained]")
    return 0


def run_layers(args: argparse.Namespace) -> int:
    from .models.layers import ALIASES, LAYERS

    rows = [[name, layer.help, ", ".join(a for a, target in ALIASES.items() if target == name)]
            for name, layer in LAYERS.items()]
    _print_table("the layer language: write layers in order, separated by spaces",
                 ["layer", "usage", "also written"], rows)
    console.print("example: conv(32, k=3, p=same) relu maxpool(2) conv(64, k=3) relu maxpool(2) "
                  "flatten dense(128) relu dropout(0.5) dense")
    return 0


def _print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
