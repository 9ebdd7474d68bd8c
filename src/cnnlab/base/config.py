"""Every setting of a run, as dataclasses; YAML in and out."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import CnnlabError, suggest, unknown
from .limits import MAX_IMAGE_PIXELS, MAX_UPLOAD_MB
from .settings import build, option
from .yamlload import load_yaml

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("onecycle", "cosine", "step", "none")
SPLITS = ("test", "val")  # the held-out splits a trained run is measured on
DEFAULT_INTERPOLATION = "bilinear"
LOCAL_MLFLOW = "local"  # --mlflow without a URI: a store in mlruns/ beside the run folders
UNKNOWN_SCORE_CHOICES = ("msp", "energy", "maxlogit", "mahalanobis")
DEFAULT_UNKNOWN_SCORE = "energy"  # chosen by bench/unknown.py (BENCHMARKS.md, "Unknown images")
ENGINES = ("auto", "torch", "onnx")
ENGINE_HELP = ("what runs the network forward: onnx (ONNX Runtime, on a graph exported once into "
               "RUN/engine/ and checked against PyTorch), torch, or auto: onnx on the CPU where the "
               "graph matches PyTorch's outputs, else torch")

# The recipes: the settings that depend on what is trained, filled in by train/recipes.py where the
# user left them unset. Declared here, beside the fields, so that each field's help says them from
# this one table. Keys in dotted form, as config overrides take them; the measurements behind the
# values are in BENCHMARKS.md.
RECIPES: dict[str, dict[str, Any]] = {
    "scratch": {"epochs": 15, "batch_size": 128, "ema": 0.99, "tta": True, "backbone_lr": 1.0,
                "augment.resized_crop": 0.0, "freeze_stages": 0},
    "probe": {"epochs": 15, "batch_size": 128, "ema": 0.0, "tta": False, "backbone_lr": 1.0,
              "augment.resized_crop": 0.0, "freeze_stages": 0},
    "fine-tune": {"epochs": 4, "batch_size": 32, "ema": 0.0, "tta": False, "backbone_lr": 0.2,
                  "augment.resized_crop": 0.35},  # freeze_stages: by network, train/recipes.py
}
DEFAULT_LR = {"sgd": 0.1, "adam": 5e-3, "adamw": 5e-3}  # from scratch, by optimizer
FINE_TUNE_LR = {"adam": 5e-4, "adamw": 5e-4, "sgd": 0.01}


def _by_recipe(key: str) -> str:
    """'default: 15 from scratch, 15 probe, 6 fine-tune', from RECIPES."""
    def shown(value: Any) -> str:
        return ("on" if value else "off") if isinstance(value, bool) else f"{value:g}"

    return "default: " + ", ".join(f"{shown(recipe[key])} {name}" for name, recipe in RECIPES.items())


def _lr_by_recipe() -> str:
    def rates(table: dict[str, float]) -> str:
        return f"{table['adamw']:g} adam/adamw, {table['sgd']:g} sgd"

    return f"default: {rates(DEFAULT_LR)} from scratch; {rates(FINE_TUNE_LR)} fine-tuning"


@dataclass
class DataConfig:
    name: str = option("fashion-mnist", "dataset name, folder of class folders, or CSV manifest",
                       flag="--data", metavar="DATA")
    val_fraction: float = option(0.1, "share of train held out for validation (when the data has "
                                      "no val split)", minimum=0, below=1)
    # A folder without test/ (or a CSV without test rows) has nothing held out to report on
    # unless a share of it is set aside before anything is fitted.
    test_fraction: float = option(0.0, "share of train held out as the test split (when the data "
                                       "has no test split)", minimum=0, below=1)
    split_seed: int = option(0, "seed of the held-out split (the same images for every run)", minimum=0)
    image_size: int | None = option(None, "resize images to this square side (default: as stored)",
                                    minimum=1, maximum=4096)
    channels: int | None = option(None, "1 (grayscale) or 3 (RGB); default: as the images are",
                                  minimum=1, maximum=3)
    strict: bool = option(False, "stop on an unreadable image instead of skipping it")
    stream: bool | None = option(None, "stream image files instead of holding them in memory "
                                       "(default: hold them when they fit)")
    workers: int = option(2, "DataLoader workers that decode image files", minimum=0, maximum=256)
    per_class: int | None = option(None, "keep only the first N training images of each class", minimum=1)
    # Unset means unset: a pretrained network then gets its weights' own filter, anything else
    # DEFAULT_INTERPOLATION (`resize_filter`), and config.yaml records the one used.
    interpolation: str | None = option(None, f"resizing filter (default {DEFAULT_INTERPOLATION}; "
                                             f"a pretrained network's own)",
                                       choices=("nearest", "bilinear", "bicubic", "lanczos"),
                                       kind="interpolation")
    exclude: str | None = option(None, "leave out the images this file names: a check.csv (its "
                                       "rows marked exclude) or a list of files, one a line",
                                 metavar="FILE")
    # Recorded when the data is first loaded, so config.yaml says which list the run left out.
    exclude_sha256: str | None = option(None, "SHA-256 of the --exclude file", cli=False)

    @property
    def resize_filter(self) -> str:
        return self.interpolation or DEFAULT_INTERPOLATION


@dataclass
class AugmentConfig:
    # Off by default: it costs accuracy in short runs and pays off in longer training (the
    # fashion-long preset; BENCHMARKS.md).
    crop_padding: int = option(0, "random crop after padding by this many pixels; 0 turns it off", minimum=0)
    flip: bool | None = option(None, "random horizontal flips (default: where the data allows)")
    erasing: float = option(0.0, "random erasing probability", minimum=0, maximum=1)
    rotation: float = option(0.0, "random rotation, max degrees", minimum=0, maximum=180)
    # torchvision's RandomResizedCrop, scaled to crop_size. None: the recipe's.
    resized_crop: float | None = option(
        None, "random resized crops keeping at least this share of the area, 0 = off "
              f"({_by_recipe('augment.resized_crop')})", minimum=0, maximum=1)
    # Smaller is faster, and testing at a higher resolution than training is better (FixRes,
    # Touvron 2019). None: 6/7 of the input side fine-tuning, else the input side.
    crop_size: int | None = option(
        None, "with --resized-crop: train on crops of this side (default: 6/7 of the input "
              "fine-tuning); evaluation keeps the input size", minimum=1, maximum=4096)


@dataclass
class TrainConfig:
    # --help lists the flags under these headings, in this order.
    HELP_GROUPS = {
        "data": ("data",),
        "model": ("model", "pretrained", "init", "tta", "whiten"),
        "optimization": ("epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov",
                         "weight_decay", "schedule", "warmup", "label_smoothing", "ema", "class_weights",
                         "patience", "seed"),
        "augmentation": ("augment",),
        "transfer learning": ("freeze", "freeze_epochs", "freeze_stages", "backbone_lr",
                              "feature_cache", "probe_first", "freeze_bn"),
        "adversarial training": ("adversarial", "adv_eps", "adv_steps", "adv_step_size"),
        "output and machine": ("out", "report", "calibrate", "log", "mlflow", "device", "threads",
                               "amp", "channels_last", "engine"),
    }

    data: DataConfig = option(factory=DataConfig)
    augment: AugmentConfig = option(factory=AugmentConfig)
    # Settings left at None are filled in by the recipe that fits the run (train/recipes.py):
    # training from scratch, fine-tuning a pretrained backbone, or a linear probe on a frozen one.
    model: str | None = option(
        None, "named network, layer spec string, YAML file, or timm:NAME (default: fast; for a "
              "folder of RGB photos, the pretrained timm:efficientnet_lite0)")
    epochs: int | None = option(None, f"passes over the training data ({_by_recipe('epochs')})",
                                minimum=1)
    batch_size: int | None = option(None, f"images per gradient step ({_by_recipe('batch_size')})",
                                    minimum=1)
    optimizer: str = option("adamw", "the gradient-descent optimizer", choices=OPTIMIZERS,
                            kind="optimizer")
    lr: float | None = option(None, f"peak learning rate ({_lr_by_recipe()}; 0 freezes every "
                                    f"weight)",
                                 minimum=0, maximum=1e30)
    momentum: float = option(0.9, "SGD momentum", minimum=0, below=1)
    nesterov: bool = option(False, "Nesterov momentum for SGD")
    weight_decay: float = option(5e-4, "L2 penalty (decoupled for adamw)", minimum=0)
    schedule: str = option("onecycle", "learning-rate schedule", choices=SCHEDULES, kind="schedule")
    # A short warmup (BENCHMARKS.md, what each lever gave).
    warmup: float = option(0.1, "onecycle: fraction of training rising to the peak lr", minimum=0, maximum=1)
    label_smoothing: float = option(0.1, "cross-entropy label smoothing", minimum=0, below=1)
    ema: float | None = option(
        None, "keep an exponential moving average of the weights, with this decay per step, and "
              f"validate, save and predict with it (0 turns it off; {_by_recipe('ema')})",
        minimum=0, below=1)
    # Validation during training does not average flips. Data that must not be mirrored (digits)
    # never is.
    tta: bool | None = option(None, "predict and evaluate on each image and its mirror image, "
                                    f"averaged ({_by_recipe('tta')})")
    # With a 2% warmup, 90% on Fashion-MNIST after one epoch (the fashion-quick preset); not the
    # default until tried on other data (on synthetic shapes it moved Grad-CAM off the objects).
    whiten: bool = option(False, "start the first conv's filters as whitening filters of the "
                                 "training images' patches (computed from them before the first "
                                 "step)")
    class_weights: bool = option(False, "weigh the loss by inverse class frequency")
    patience: int | None = option(None, "early stopping: epochs without a better val accuracy", minimum=1)
    seed: int = option(0, "random seed (CPU training is deterministic with it)", minimum=0)
    device: str = option("auto", "auto | cpu | cuda | mps")
    threads: int | None = option(None, "CPU threads (default: one per physical core)", minimum=1,
                                 maximum=1024)
    amp: bool = option(True, "mixed precision (CUDA only)")
    channels_last: bool = option(True, "channels-last memory format for conv layers")
    engine: str = option("auto", "what computes pretrained features for the linear probe (of "
                                 "--freeze backbone, and fine-tuning's first head): onnx (ONNX "
                                 "Runtime, on a graph exported once into the cache folder and "
                                 "checked against PyTorch), torch, or auto: onnx on the CPU where "
                                 "the graph matches PyTorch's outputs, else torch",
                         choices=ENGINES, kind="engine")
    report: bool = option(False, "write RUN/report.html when training ends (cnnlab report)")
    calibrate: bool = option(True, "after training, fit temperature scaling and the unknown-image "
                                   "detector on the validation split (cnnlab calibrate)")
    log: str = option("tensorboard", "log every epoch to TensorBoard event files in the run folder "
                                     "(tensorboard --logdir runs), or not (none)",
                      choices=("tensorboard", "none"), kind="--log value")
    mlflow: str | None = option(None, "log the run to MLflow: a tracking server's URI, or alone "
                                      "for a local store beside the run folder (mlflow.db, mlruns/)",
                                metavar="URI", bare=LOCAL_MLFLOW)
    out: str | None = option(None, "run folder (default runs/<data>-<model>, numbered)", metavar="DIR")
    # "fgsm" = FGSM with a random start (Wong et al., 2020), "pgd" = PGD (Madry et al., 2018).
    adversarial: str | None = option(None, "adversarial training: fgsm (with a random start) or pgd",
                                     choices=("fgsm", "pgd"), kind="adversarial training method")
    adv_eps: float = option(0.1, "adversarial training epsilon, pixel units in [0, 1]", minimum=0, maximum=1)
    adv_steps: int = option(7, "PGD steps per batch in adversarial training", minimum=1)
    adv_step_size: float | None = option(
        None, "adversarial step size (default: 1.25 eps for fgsm, 2.5 eps / steps for pgd)", above=0)
    pretrained: bool = option(False, "ImageNet weights for a timm model (--model timm:NAME)")
    init: str | None = option(None, "start from the weights of this run folder (its network unless "
                                    "--model says otherwise; a new output layer where the classes "
                                    "differ)", metavar="RUN")
    freeze: str | None = option(None, "backbone: keep the pretrained features and fit only the "
                                      "head, to convergence (an exact linear probe)",
                                choices=("backbone",), kind="--freeze value")
    freeze_epochs: int = option(0, "fine-tuning: train the head alone this many epochs first", minimum=0)
    freeze_stages: int | None = option(
        None, "fine-tuning: the first N stages of the pretrained timm network keep their weights, "
              "its stem counting as the first (no gradients through them: faster steps; default "
              "when fine-tuning: the stages at 1/8 of the input side or finer, 4 of "
              "EfficientNet-Lite0's; 0 otherwise)", minimum=0, metavar="N")
    backbone_lr: float | None = option(
        None, f"backbone learning rate as a fraction of --lr ({_by_recipe('backbone_lr')})",
        minimum=0)
    feature_cache: bool = option(True, "with --freeze backbone and no augmentation: compute the "
                                       "features once")
    # LP-FT, Kumar et al. 2022.
    probe_first: bool = option(True, "fine-tuning: start from the head fitted as a linear probe "
                                     "(off: from a zero head)")
    # Batch norm's scale and shift still train.
    freeze_bn: bool = option(True, "batch norm keeps the pretrained statistics when fine-tuning",
                             flag="--train-bn")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


LR_RULES = ("valley", "steep", "minimum")  # the learning-rate finder's suggestions (fastai's)


@dataclass(frozen=True)
class LrFindSettings:
    """The learning-rate range test's own settings (`cnnlab lr-find`); what it trains is train's."""

    start_lr: float = option(1e-7, "the sweep's first learning rate", above=0)
    end_lr: float = option(10.0, "the sweep's last learning rate", above=0)
    steps: int = option(100, "steps of the sweep; it stops early once the smoothed loss passes 4x "
                             "its minimum", minimum=10)
    suggest: str = option("valley", "the rule whose rate is suggested: valley (the longest fall "
                                    "of the loss, fastai's default), steep (its steepest point), "
                                    "minimum (a tenth of the rate of least loss)",
                          choices=LR_RULES, kind="suggestion rule")


# The settings of the verbs that read a run: each verb's parser, command and library function take
# their defaults from these fields alone.
DEVICE_HELP = "auto | cpu | cuda | mps"
DATA_HELP = "other data with the same classes (default: the run's own)"
EVAL_BATCH = 256
UNKNOWN_HELP = ("call an image 'unknown' where the model's unknown-image detector says it is none of "
                "its classes (cnnlab calibrate)")
QUIET_HELP = "print nothing but errors (the results are still written)"


@dataclass(frozen=True)
class EvaluateSettings:
    data: str | None = option(None, DATA_HELP, metavar="DATA")
    split: str = option("test", "the split evaluated", choices=SPLITS, kind="split")
    # A few pixels are a tenth of a 28-px image and nothing on a 224-px photo, where the test
    # still costs 13 passes over the split (146 s of 164 on flowers12): off there by default.
    max_shift: int | None = option(None, "translation test: shift images by 0..N pixels (0 turns "
                                         "it off; default 3 for images up to 64 px trained from "
                                         "scratch, off for larger or pretrained ones)",
                                   minimum=0, maximum=16)
    top_losses: int = option(16, "the N images of highest loss, named by file, in "
                                 "top_losses.png and the report; given here, also a table on "
                                 "the terminal (0: none)", minimum=0)
    unknown: str | None = option(None, "images of none of the run's classes (a dataset name, a "
                                       "folder or an image): how well each unknown-image score "
                                       "tells them from the known, in unknown.json and "
                                       "unknown_scores.png", metavar="DATA")
    batch_size: int = option(EVAL_BATCH, "images per forward pass", minimum=1)
    engine: str = option("auto", ENGINE_HELP, choices=ENGINES, kind="engine")
    out: str | None = option(None, "results folder (default RUN/evaluate; RUN/evaluate-val for "
                                   "--split val, RUN/evaluate-NAME for --data NAME)", metavar="DIR")
    device: str = option("auto", DEVICE_HELP)
    quiet: bool = option(False, QUIET_HELP)


@dataclass(frozen=True)
class PredictSettings:
    topk: int = option(5, "how many classes to list per input", minimum=1)
    format: str | None = option(None, "table | json | csv (default: a table on the terminal, or "
                                      "what --out's extension says)",
                                choices=("table", "json", "csv"), kind="format")
    out: str | None = option(None, "write the predictions to this .json or .csv file", metavar="FILE")
    batch_size: int = option(EVAL_BATCH, "images per forward pass", minimum=1)
    workers: int = option(2, "DataLoader workers that decode image files", minimum=0, maximum=256)
    fps: float = option(1.0, "video frames sampled per second", above=0)
    # A plain floor on the top probability, or per-class thresholds that evaluate measured.
    min_prob: float | None = option(None, "call an input 'unknown' when its top probability is "
                                          "below X", minimum=0, maximum=1)
    min_precision: float | None = option(
        None, "call an input 'unknown' when its top class's probability is below the threshold "
              "that gave that class this precision in the run's evaluation (0.9, 0.95 or 0.99; "
              "from RUN/evaluate-val when there is one, else RUN/evaluate)", above=0, maximum=1)
    unknown: bool = option(True, UNKNOWN_HELP)
    engine: str = option("auto", ENGINE_HELP, choices=ENGINES, kind="engine")
    device: str = option("auto", DEVICE_HELP)


EXPLAIN_METHODS = ("feature-maps", "filters", "saliency", "integrated-gradients", "gradcam",
                   "occlusion", "embedding")


def explain_methods(text: str) -> list[str]:
    """'saliency,gradcam' -> the methods in order; 'all' -> every one."""
    methods = []
    for name in (part.strip() for part in text.split(",") if part.strip()):
        if name not in (*EXPLAIN_METHODS, "all"):
            raise unknown("explain method", name, (*EXPLAIN_METHODS, "all"))
        methods.extend(EXPLAIN_METHODS if name == "all" else [name])
    if not methods:
        raise CnnlabError(f"--method names no method; choose from {', '.join(EXPLAIN_METHODS)}")
    return list(dict.fromkeys(methods))


@dataclass(frozen=True)
class ExplainSettings:
    method: str = option("gradcam", " | ".join((*EXPLAIN_METHODS, "all")) + "; several: "
                                    "saliency,gradcam")
    layer: str | None = option(None, "layer name (see --list-layers); default: every conv layer / "
                                     "the last one for gradcam")
    target: str | int | None = option(None, "class name or index to explain, or several: cat,dog "
                                            "(default: the predicted class)")
    shared_scale: bool = option(False, "one colour scale for every map of the call (compare "
                                       "images or targets); default: each map to its own peak")
    out: str | None = option(None, "output folder (default RUN/explain)", metavar="DIR")
    split: str = option("test", "embedding: the split mapped", choices=SPLITS, kind="split")
    limit: int = option(2000, "embedding: images to map", minimum=1)
    projection: str = option("tsne", "embedding: tsne | pca", choices=("tsne", "pca"),
                             kind="projection")
    device: str = option("auto", DEVICE_HELP)
    quiet: bool = option(False, QUIET_HELP)


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


@dataclass(frozen=True)
class ExportSettings:
    int8: bool = option(False, "also write model.int8.onnx, statically quantized by ONNX Runtime "
                               "on training images")
    calibration: int = option(256, "int8: training images that calibrate the activation ranges", minimum=1)
    limit: int | None = option(None, "parity: measure on the first N test images (default: all)", minimum=1)
    check: bool = option(True, "fail (exit code 1) when parity misses its targets")
    opset: int | None = option(None, "ONNX opset (default: the exporter's)", minimum=7)
    out: str | None = option(None, "export folder (default RUN/export)", metavar="DIR")
    batch_size: int = option(EVAL_BATCH, "images per forward pass when measuring parity", minimum=1)
    quiet: bool = option(False, QUIET_HELP)


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


@dataclass(frozen=True)
class RunsSettings:
    sort: str = option("date", "sort by a column: name, data, model, val, test, epochs, time, date, "
                               "status, or a setting that differs (accuracies best first, the "
                               "rest ascending)", metavar="KEY")
    format: str | None = option(None, "table | csv | json (default: a table on the terminal, or "
                                      "what --out's extension says)",
                                choices=("table", "csv", "json"), kind="format")
    out: str | None = option(None, "write the list to this .csv or .json file", metavar="FILE")


@dataclass(frozen=True)
class CompareSettings:
    evaluate: bool = option(True, "first evaluate, on its test split, each run that lacks "
                                  "RUN/evaluate/ (off: per-class accuracy and the paired test "
                                  "leave that run out)")
    out: str | None = option(None, "results folder (default: compare-A-B beside the first run)",
                             metavar="DIR")
    device: str = option("auto", DEVICE_HELP)
    quiet: bool = option(False, QUIET_HELP)


TUNE_METRICS = ("val_acc", "val_loss", "val_robust_acc")  # val_loss is minimized, the others maximized


@dataclass(frozen=True)
class TuneSettings:
    """`cnnlab tune`'s own settings; the training settings of every trial are train's flags."""

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
    sampler_seed: int | None = option(None, "seed of the sampler (one worker: the same trials "
                                            "again); default: random, so workers differ",
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


@dataclass(frozen=True)
class CheckSettings:
    run: str | None = option(None, "embed the images with this run's network (default: pretrained "
                                   "EfficientNet-Lite0 for photos, pixels and a small CNN per fold "
                                   "for small images); its data when DATA is not given",
                             metavar="RUN")
    out: str | None = option(None, "results folder (default RUN/check with --run, else "
                                   "checks/DATA)", metavar="DIR")
    folds: int = option(5, "cross-validation folds for the out-of-sample probabilities "
                           "(fewer where a class has fewer images)", minimum=2)
    epochs: int = option(3, "small images: epochs of the CNN trained per fold", minimum=1)
    # On flowers12 as it ships, 0.97 and 4 bits find every near copy a person confirms (crops,
    # shifts, colour changes, mirror images) and no false pair (BENCHMARKS.md).
    similarity: float | None = option(None, "near copies: cosine similarity of the embeddings from "
                                            "which two images are copies (default 0.97; 0.99 for "
                                            "pixels)", minimum=0, maximum=1)
    hash_bits: int | None = option(None, "near copies: difference-hash bits (of 64) that may "
                                         "differ, an image or its mirror image (default 4 for "
                                         "photos, off for small images; -1 turns the hash off)",
                                   minimum=-1, maximum=64)
    seed: int = option(0, "seed of the folds and of the per-fold CNN", minimum=0)
    batch_size: int = option(64, "images per forward pass", minimum=1)
    workers: int = option(2, "processes that decode image files", minimum=0, maximum=256)
    threads: int | None = option(None, "CPU threads (default: one per physical core)", minimum=1,
                                 maximum=1024)
    device: str = option("auto", DEVICE_HELP)
    quiet: bool = option(False, QUIET_HELP)


@dataclass(frozen=True)
class CalibrateSettings:
    score: str = option(DEFAULT_UNKNOWN_SCORE, "what tells known images from others: msp (softmax "
                                               "probability), energy, maxlogit or mahalanobis "
                                               "(distance of the features to the classes)",
                        choices=UNKNOWN_SCORE_CHOICES, kind="--score value")
    keep: float = option(0.95, "share of the validation images the unknown threshold keeps",
                         above=0, below=1)
    temperature: bool = option(True, "fit temperature scaling of the probabilities")
    train_images: int = option(5000, "training images whose features the mahalanobis score "
                                     "describes (the first N)", minimum=2)
    device: str = option("auto", DEVICE_HELP)
    quiet: bool = option(False, QUIET_HELP)


@dataclass(frozen=True)
class ReportSettings:
    full: bool = option(False, "first run what the report lacks: evaluate, a quick attack (500 "
                               "images), explanations of 4 test images, the baselines")
    out: str | None = option(None, "the HTML file (default RUN/report.html)", metavar="FILE")
    quiet: bool = option(False, QUIET_HELP)


@dataclass(frozen=True)
class ServeSettings:
    host: str = option("127.0.0.1", "address to listen on; 0.0.0.0 opens the server to the network")
    port: int = option(8000, "TCP port", minimum=1, maximum=65535)
    engine: str = option("auto", ENGINE_HELP, choices=ENGINES, kind="engine")
    max_batch: int = option(32, "dynamic batching: at most this many images per forward pass "
                                "(1 turns batching off)", minimum=1)
    max_wait_ms: float = option(5.0, "dynamic batching: how long the first image of a batch waits "
                                     "for others", minimum=0)
    max_queue: int = option(256, "images waiting at most; beyond it requests get 503 with "
                                 "Retry-After", minimum=1)
    max_upload_mb: float = option(MAX_UPLOAD_MB, "largest request body, in MB", minimum=0)
    max_pixels: int = option(MAX_IMAGE_PIXELS, "largest image, in pixels (decompression bombs are "
                                               "refused before decoding)", minimum=1)
    request_timeout: float = option(30.0, "seconds a request may wait for the model (queue and "
                                          "forward pass); past it 504, and /healthz answers 503 "
                                          "while one forward pass runs longer", above=0,
                                    maximum=86400)
    header_timeout: float = option(10.0, "seconds a client has to send a request's headers; a "
                                         "slower one is disconnected", above=0, maximum=3600)
    body_timeout: float = option(60.0, "seconds a client has to send a request's body; a slower "
                                       "one gets 408", above=0, maximum=3600)
    max_header_kb: int = option(64, "largest request line and headers, in kB; larger ones get 431",
                                minimum=1, maximum=1_000_000)
    max_connections: int = option(512, "connections open at once; over it the one waiting longest "
                                       "for a request is closed, or with none waiting the new one "
                                       "gets 503", minimum=1, maximum=1_000_000)
    topk: int = option(5, "classes per prediction unless ?topk= says otherwise", minimum=1)
    unknown: bool = option(True, UNKNOWN_HELP)
    threads: int | None = option(None, "CPU threads for the model (default: one per physical core)",
                                 minimum=1, maximum=1024)


CONFIG_SECTIONS = {"data": DataConfig, "augment": AugmentConfig}
SECTION_SHORTHAND = {"data": "name"}  # `data: digits` means `data: {name: digits}`


def _section(name: str, values: Any) -> Any:
    if name in SECTION_SHORTHAND and isinstance(values, str):
        values = {SECTION_SHORTHAND[name]: values}
    if not isinstance(values, dict):
        raise CnnlabError(f"setting {name!r} must be a mapping")
    return build(CONFIG_SECTIONS[name], values, f"{name}.")


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """Build a TrainConfig from nested dicts, refusing unknown keys with a suggestion and values of
    the wrong type with the type expected."""
    if not isinstance(values, dict):
        raise CnnlabError("a run config must be a mapping of settings")
    values = dict(values)
    sections = {name: _section(name, values.pop(name, None) or {}) for name in CONFIG_SECTIONS}
    config = build(TrainConfig, values)
    config.data, config.augment = sections["data"], sections["augment"]
    return config


def flat_key(name: str) -> str:
    """The dotted key of a setting given by its flat name, as the CLI flags name them:
    'image_size' -> 'data.image_size', 'epochs' -> 'epochs'."""
    if name in {f.name for f in dataclasses.fields(TrainConfig)}:
        return name
    for section, cls in CONFIG_SECTIONS.items():
        if name in {f.name for f in dataclasses.fields(cls)}:
            return f"{section}.{name}"
    return name  # an unknown name: config_from_dict refuses it with a suggestion


PRESETS = Path(__file__).parent.parent / "presets"


def preset_names() -> list[str]:
    """Named recipes shipped with cnnlab: `--config NAME` runs one."""
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def load_config(path: str | Path) -> TrainConfig:
    """A run config from a YAML file, or the preset of that name."""
    path = Path(path)
    if not path.is_file() and str(path) in preset_names():
        path = PRESETS / f"{path}.yaml"
    if not path.is_file():
        raise CnnlabError(f"config file {path} does not exist (presets: "
                          f"{', '.join(preset_names())}){suggest(str(path), preset_names())}")
    values = load_yaml(path.read_text(encoding="utf-8"), f"config file {path}") or {}
    return config_from_dict(values)


def apply_overrides(config: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """Set dotted keys ('data.name', 'epochs') on a copy of the config."""
    values = config.to_dict()
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        (values[section] if section else values)[name] = value
    return config_from_dict(values)
