"""The verb table: each `cnnlab VERB` and `cnnlab.VERB(...)` described once.

A verb is its name, its help, its settings class (flags, Python keywords and YAML keys), its
positional arguments, the function that does its work and the function that shows its result on
the terminal. `cli.py` builds every subcommand from this table and `api.py` every Python function,
so the command line and Python run the same function and get the same result. The work and the
show are named as "module:function" and imported when the verb runs: this module, and every
verb's --help, load no torch.

A new verb is a folder (its settings.py, the work, its show.py) and one `register_verb` line below.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from .attack.settings import EPS_UNITS, AttackSettings
from .base.registry import register
from .baselines.settings import BaselineSettings
from .calibrate.settings import CalibrateSettings
from .catalog.settings import DatasetsSettings, LayersSettings, ModelsSettings, SummarySettings
from .check.settings import CheckSettings
from .compress.settings import CompressSettings
from .evaluate.settings import EvaluateSettings
from .experiments.settings import CompareSettings, RunsSettings
from .explain.settings import ExplainSettings
from .export.settings import ExportSettings
from .predict.settings import PredictSettings
from .report.settings import ReportSettings
from .serve.settings import ServeSettings
from .train.settings import LrFindSettings, TrainRunSettings
from .tune.settings import TuneSettings


@dataclass(frozen=True)
class Argument:
    """A positional argument: the Python parameter of the same name, in the same place."""

    name: str
    help: str
    nargs: str | None = None  # argparse's: None (exactly one), "?", "*" or "+"
    default: Any = None
    metavar: str | None = None
    variadic: bool = False  # Python takes it as *name: the command line's values are spread


@dataclass(frozen=True)
class Verb:
    """One verb of the command line and of Python."""

    name: str
    help: str
    settings: type  # the verb's settings dataclass (option() fields)
    run: str  # "module:function" doing the work; its keywords are the settings' fields
    show: str  # "module:function" printing the result: show(result, settings) -> exit code
    arguments: tuple[Argument, ...] = ()
    trains: bool = False  # also takes train's settings (config.TrainConfig's flags)
    description: str | None = None  # --help's text under the usage line

    @property
    def python(self) -> str:
        """The name of cnnlab.VERB."""
        return self.name.replace("-", "_")

    def function(self) -> Callable[..., Any]:
        """The function that does the work (imported now)."""
        return _imported(self.run)

    def shower(self) -> Callable[[Any, Any], int]:
        """The function that shows the result (imported now)."""
        return _imported(self.show)

    def settings_of(self, values: dict[str, Any]) -> Any:
        """The verb's settings from keyword values (others, such as train's, left out)."""
        from .base.settings import build

        names = {field.name for field in dataclasses.fields(self.settings)}
        return build(self.settings, {k: v for k, v in values.items() if k in names})


def _imported(where: str) -> Callable[..., Any]:
    module, _, name = where.partition(":")
    return getattr(import_module(module), name)


VERBS: dict[str, Verb] = {}


def register_verb(verb: Verb) -> Verb:
    """Add a verb to the table; a name taken twice is a mistake in the code."""
    return register(VERBS, verb.name, verb, "verb")


RUN = Argument("run", "run folder")

register_verb(Verb(
    "train", "train a CNN and write a run folder", TrainRunSettings,
    "cnnlab.api:train", "cnnlab.train.show:show_run", trains=True))
register_verb(Verb(
    "lr-find", "the learning-rate range test: loss against the rate, and a suggested --lr",
    LrFindSettings, "cnnlab.train.lr_find:lr_find", "cnnlab.train.show:show_lr_find", trains=True,
    description="Train's flags say what is swept; --out is the folder of lr_find.json and "
                "lr_find.png (default runs/lr-find-DATA-MODEL)."))
register_verb(Verb(
    "evaluate", "metrics, confusion matrix, calibration, mistakes", EvaluateSettings,
    "cnnlab.evaluate.run:evaluate_run", "cnnlab.evaluate.show:show_evaluation", (RUN,)))
register_verb(Verb(
    "predict", "top-k classes for images, folders, globs, videos", PredictSettings,
    "cnnlab.predict.run:predict", "cnnlab.predict.show:show_predictions",
    (Argument("run", "run folder, or pretrained:NAME for an ImageNet model "
                     "(e.g. pretrained:efficientnet_lite0)"),
     Argument("inputs", "image files, folders (recursive), globs ('imgs/*.png'), videos",
              nargs="+", metavar="INPUT"))))
register_verb(Verb(
    "explain", "feature maps, filters, saliency, Grad-CAM, embedding, the hierarchy of features",
    ExplainSettings, "cnnlab.explain.run:explain", "cnnlab.explain.show:show_explanation",
    (RUN, Argument("images", "images to explain (not needed for filters, embedding, hierarchy)",
                   nargs="*", metavar="IMAGE"))))
register_verb(Verb(
    "export", "ONNX fp32 (and int8) in RUN/export/, parity measured against PyTorch",
    ExportSettings, "cnnlab.export.run:export_run", "cnnlab.export.show:show_export", (RUN,)))
register_verb(Verb(
    "compress", "a smaller, faster model within an accuracy budget: pruned, distilled, measured "
                "here", CompressSettings, "cnnlab.compress.run:compress",
    "cnnlab.compress.show:show_compression", (RUN,),
    description="Candidates are the run's network pruned by --prune shares of its channels, at "
                "its input side or the --sizes given, each trained with the run as teacher "
                "(knowledge distillation, on the run's own recipe); each is exported and timed "
                "on ONNX Runtime on this machine. The fastest within --max-drop points of the "
                "teacher's validation accuracy (and --target-ms) becomes a run folder of its "
                "own, calibrated and exported (int8 where it pays); RUN/compress/ holds the "
                "table and the figure."))
register_verb(Verb(
    "serve", "HTTP API and web page: predictions with Grad-CAM overlays", ServeSettings,
    "cnnlab.serve.app:run_server", "cnnlab.serve.show:show_served",
    (Argument("model", "run folder, export folder, or .onnx file in one"),)))
register_verb(Verb(
    "attack", "FGSM/PGD robust accuracy against epsilon, adversarial examples", AttackSettings,
    "cnnlab.attack.robustness:attack_run", "cnnlab.attack.show:show_attack", (RUN,),
    description=EPS_UNITS))
register_verb(Verb(
    "calibrate", "fit temperature scaling and the unknown-image detector on the validation split",
    CalibrateSettings, "cnnlab.calibrate.run:calibrate_run",
    "cnnlab.calibrate.show:show_calibration", (RUN,)))
register_verb(Verb(
    "report", "RUN/report.html: the whole story of a run in one self-contained file",
    ReportSettings, "cnnlab.api:report", "cnnlab.report.show:show_report", (RUN,)))
register_verb(Verb(
    "baselines", "logistic regression, HOG + linear SVM, random forest, PCA + RBF SVM on the "
                 "same split", BaselineSettings, "cnnlab.baselines.classic:baselines",
    "cnnlab.baselines.show:show_baselines"))
register_verb(Verb(
    "check", "likely label errors, duplicates and train/test leaks, outliers in a dataset",
    CheckSettings, "cnnlab.check.run:check", "cnnlab.check.show:show_check",
    (Argument("data", "dataset name, folder of class folders, or CSV manifest (default: --run's "
                      "data)", nargs="?", metavar="DATA"),)))
register_verb(Verb(
    "summary", "per-layer shapes, parameters, FLOPs, receptive field", SummarySettings,
    "cnnlab.catalog.run:summary", "cnnlab.catalog.show:show_summary",
    (Argument("model", "named network, layer spec string, YAML file, timm:NAME or run folder"),)))
register_verb(Verb(
    "datasets", "list datasets and whether they are here", DatasetsSettings,
    "cnnlab.catalog.run:datasets", "cnnlab.catalog.show:show_datasets"))
register_verb(Verb(
    "models", "list the named networks", ModelsSettings, "cnnlab.catalog.run:models",
    "cnnlab.catalog.show:show_models",
    (Argument("pattern", "filter, e.g. 'res*'", nargs="?", default="*"),)))
register_verb(Verb(
    "layers", "the layer language: every layer and its arguments", LayersSettings,
    "cnnlab.catalog.run:layers", "cnnlab.catalog.show:show_layers"))
register_verb(Verb(
    "runs", "every run in one table: the settings that differ, accuracy, time, status",
    RunsSettings, "cnnlab.experiments.table:list_runs", "cnnlab.experiments.show:show_runs",
    (Argument("root", "a folder of run folders, searched 4 deep (default runs/)", nargs="?",
              default="runs", metavar="DIR"),)))
register_verb(Verb(
    "compare", "runs side by side: settings, curves, per-class accuracy, McNemar's test",
    CompareSettings, "cnnlab.api:compare",
    "cnnlab.experiments.show:show_comparison",
    (Argument("runs", "two or more run folders", nargs="+", metavar="RUN", variadic=True),)))
register_verb(Verb(
    "tune", "search training settings on Optuna: each trial a run folder, pruning, one study "
            "shared by many workers", TuneSettings, "cnnlab.tune.sweep:tune",
    "cnnlab.tune.show:show_tune", trains=True))
