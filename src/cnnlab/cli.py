"""Command-line interface: argument parsing only; the work is done by the functions it calls."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__, commands
from .base.config import (
    EPS_UNITS,
    LR_RULES,
    AttackSettings,
    BaselineSettings,
    CalibrateSettings,
    CheckSettings,
    CompareSettings,
    EvaluateSettings,
    ExplainSettings,
    ExportSettings,
    LrFindSettings,
    PredictSettings,
    ReportSettings,
    RunsSettings,
    ServeSettings,
    TrainConfig,
    TuneSettings,
    preset_names,
)
from .base.errors import CnnlabError, printable, suggest
from .base.settings import add_flags

# Other tools' names for our flags (Keras, Ultralytics, timm, fastai): a user who types them gets
# ours, where the verb has it; spelling distance alone finds nothing for most of them.
COMMON_FLAGS = {
    "--learning-rate": "--lr", "--learning_rate": "--lr", "--lr0": "--lr",
    "--batch": "--batch-size", "--bs": "--batch-size", "--batch_size": "--batch-size",
    "--gpu": "--device cuda", "--cuda": "--device cuda", "--cpu": "--device cpu",
    "--val-split": "--val-fraction", "--validation-split": "--val-fraction",
    "--test-split": "--test-fraction", "--freeze-backbone": "--freeze backbone",
    "--workers": "--threads", "--num-workers": "--workers", "--imgsz": "--image-size",
}


class Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line with a suggestion, exit code 2."""

    argv: Sequence[str] = ()  # the command line being parsed, to find the verb in an error

    def error(self, message: str) -> None:  # type: ignore[override]
        if message.startswith("unrecognized arguments:"):
            flag = message.split(":", 1)[1].split()[0].split("=")[0]
            message += self._suggest_flag(flag)
        if message.startswith("argument --lr:") and "'find'" in message:  # --lr stays a number
            message += "; to find one, train with --lr-find (or run cnnlab lr-find)"
        raise CnnlabError(f"{self.prog}: {message}")

    def _suggest_flag(self, flag: str) -> str:
        """' (did you mean X?)' from the verb's own flags, other tools' names first."""
        options = self._verb_options()
        common = COMMON_FLAGS.get(flag)
        if common is not None and common.split()[0] in options:
            return f" (did you mean '{common}'?)"
        return suggest(flag, options)

    def _verb_options(self) -> list[str]:
        """The flags of the verb on the command line (every verb's when there is none)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                verb = next((word for word in self.argv if word in action.choices), None)
                if verb is not None:
                    return action.choices[verb]._all_options()
        return self._all_options()

    def _all_options(self) -> list[str]:
        options = []
        for action in self._actions:
            options.extend(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                for parser in action.choices.values():
                    options.extend(parser._all_options())
        return options


def _verb(sub: argparse._SubParsersAction, name: str, command: Callable, text: str,
          settings: type | None = None, **kwargs: Any) -> Parser:
    """A verb's parser: its flags come from its settings class, its work from `command`."""
    parser = sub.add_parser(name, help=text, allow_abbrev=False, **kwargs)
    if settings is not None:
        add_flags(parser, settings)
    parser.set_defaults(command=command, settings=settings)
    return parser


def _add_train(sub: argparse._SubParsersAction) -> None:
    # Flags left out keep the config's (or default) value: nothing is filled in by argparse.
    parser = _verb(sub, "train", commands.run_train, "train a CNN and write a run folder",
                   TrainConfig, argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", help=f"YAML run config, or a preset: "
                                         f"{', '.join(preset_names())}; flags override it")
    parser.add_argument("--resume", metavar="RUN", help="continue RUN from its last.ckpt")
    # A flag of its own, not a value of --lr: --lr stays a number, and config.yaml records the
    # rate found, so the run reproduces without the search.
    parser.add_argument("--lr-find", nargs="?", const="valley", choices=LR_RULES, metavar="RULE",
                        help="first run the learning-rate range test (cnnlab lr-find) and train "
                             "with the rate it suggests: valley (the default), steep or minimum")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser = _verb(sub, "lr-find", commands.run_lr_find,
                   "the learning-rate range test: loss against the rate, and a suggested --lr",
                   TrainConfig, argument_default=argparse.SUPPRESS,
                   description="Train's flags say what is swept; --out is the folder of "
                               "lr_find.json and lr_find.png (default runs/lr-find-DATA-MODEL).")
    add_flags(parser.add_argument_group("the range test"), LrFindSettings)
    parser.add_argument("--config", help=f"YAML run config, or a preset: "
                                         f"{', '.join(preset_names())}; flags override it")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")


def _add_run_verbs(sub: argparse._SubParsersAction) -> None:
    parser = _verb(sub, "evaluate", commands.run_evaluate,
                   "metrics, confusion matrix, calibration, mistakes", EvaluateSettings)
    parser.add_argument("run", help="run folder")
    parser = _verb(sub, "predict", commands.run_predict,
                   "top-k classes for images, folders, globs, videos", PredictSettings)
    parser.add_argument("run", help="run folder, or pretrained:NAME for an ImageNet model "
                                    "(e.g. pretrained:efficientnet_lite0)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, folders (recursive), globs ('imgs/*.png'), videos")
    parser = _verb(sub, "explain", commands.run_explain,
                   "feature maps, filters, saliency, Grad-CAM, embedding", ExplainSettings)
    parser.add_argument("run", help="run folder")
    parser.add_argument("images", nargs="*", metavar="IMAGE",
                        help="images to explain (not needed for filters and embedding)")
    parser.add_argument("--list-layers", action="store_true", help="print the layer names and exit")
    parser = _verb(sub, "export", commands.run_export,
                   "ONNX fp32 (and int8) in RUN/export/, parity measured against PyTorch",
                   ExportSettings)
    parser.add_argument("run", help="run folder")
    parser = _verb(sub, "serve", commands.run_serve,
                   "HTTP API and web page: predictions with Grad-CAM overlays", ServeSettings)
    parser.add_argument("run", help="run folder, export folder, or .onnx file in one")
    parser = _verb(sub, "attack", commands.run_attack,
                   "FGSM/PGD robust accuracy against epsilon, adversarial examples",
                   AttackSettings, description=EPS_UNITS)
    parser.add_argument("run", help="run folder")
    parser = _verb(sub, "calibrate", commands.run_calibrate,
                   "fit temperature scaling and the unknown-image detector on the validation split",
                   CalibrateSettings)
    parser.add_argument("run", help="run folder")
    parser = _verb(sub, "report", commands.run_report,
                   "RUN/report.html: the whole story of a run in one self-contained file",
                   ReportSettings)
    parser.add_argument("run", help="run folder")
    _verb(sub, "baselines", commands.run_baselines,
          "logistic regression, HOG + linear SVM, random forest, PCA + RBF SVM on the same split",
          BaselineSettings)
    parser = _verb(sub, "check", commands.run_check,
                   "likely label errors, duplicates and train/test leaks, outliers in a dataset",
                   CheckSettings)
    parser.add_argument("data", nargs="?", metavar="DATA",
                        help="dataset name, folder of class folders, or CSV manifest (default: "
                             "--run's data)")


def _add_catalog_verbs(sub: argparse._SubParsersAction) -> None:
    summary = _verb(sub, "summary", commands.run_summary,
                    "per-layer shapes, parameters, FLOPs, receptive field")
    summary.add_argument("model", help="named network, layer spec string, YAML file, timm:NAME or "
                                       "run folder")
    summary.add_argument("--input", default=None, help="input CxHxW, e.g. 1x28x28 or 3x32x32")
    summary.add_argument("--classes", type=int, default=None, help="number of classes")
    datasets = _verb(sub, "datasets", commands.run_datasets, "list datasets and whether they are here")
    datasets.add_argument("--download", metavar="NAME", help="download a dataset into the cache")
    models = _verb(sub, "models", commands.run_models, "list the named networks")
    models.add_argument("pattern", nargs="?", default="*", help="filter, e.g. 'res*'")
    _verb(sub, "layers", commands.run_layers, "the layer language: every layer and its arguments")


def _add_experiment_verbs(sub: argparse._SubParsersAction) -> None:
    parser = _verb(sub, "runs", commands.run_runs,
                   "every run in one table: the settings that differ, accuracy, time, status",
                   RunsSettings)
    parser.add_argument("root", nargs="?", default="runs", metavar="DIR",
                        help="a folder of run folders, searched 4 deep (default runs/)")
    parser = _verb(sub, "compare", commands.run_compare,
                   "runs side by side: settings, curves, per-class accuracy, McNemar's test",
                   CompareSettings)
    parser.add_argument("runs", nargs="+", metavar="RUN", help="two or more run folders")
    # Train's flags set every trial; the sweep's own follow, and its --out (the sweep folder)
    # replaces train's (each trial's run folder is OUT/trial-NNN).
    parser = _verb(sub, "tune", commands.run_tune,
                   "search training settings on Optuna: each trial a run folder, pruning, one study "
                   "shared by many workers", TrainConfig, argument_default=argparse.SUPPRESS,
                   conflict_handler="resolve")
    add_flags(parser.add_argument_group("the search"), TuneSettings)
    parser.add_argument("--config", help="YAML run config, which may hold a search: mapping, or a "
                                         "preset; flags override it")


def build_parser() -> Parser:
    parser = Parser(prog="cnnlab", description="Design, train and study CNNs on images.",
                    allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
    _add_train(sub)
    _add_run_verbs(sub)
    _add_catalog_verbs(sub)
    _add_experiment_verbs(sub)
    return parser


def _verbs(parser: Parser) -> list[str]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(action.choices)


def _check_verb(argv: list[str], parser: Parser) -> None:
    first = next((a for a in argv if not a.startswith("-")), None)
    verbs = _verbs(parser)
    if first is not None and first not in verbs:
        raise CnnlabError(f"unknown command {first!r}{suggest(first, verbs)}; "
                          f"commands: {', '.join(verbs)}")


def _setup_logging() -> None:
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING, stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _setup_logging()
    try:
        parser = build_parser()
        parser.argv = argv
        _check_verb(argv, parser)
        args = parser.parse_args(argv)
        if args.verb is None:
            parser.print_help()
            return 0
        return args.command(args)
    except CnnlabError as error:
        print(f"error: {printable(str(error))}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk, a folder turned read-only mid-run
        where = f" {error.filename}" if error.filename else ""
        print(f"error: cannot write or read{where}: {error.strerror or error}; every file "
              f"written before is whole (writes are atomic)", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # training says what it kept and how to go on
        print(f"interrupted{': ' if str(interrupt) else ''}{interrupt}", file=sys.stderr)
        return 130
