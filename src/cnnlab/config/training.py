"""The training settings of a run (TrainConfig): what train, lr-find and tune share, and what the
run folder, the models and adversarial training read."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import yaml

from ..base.settings import option
from .common import ENGINES
from .data import AugmentConfig, DataConfig
from .training_text import by_recipe, lr_by_recipe

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("onecycle", "cosine", "step", "none")
LOCAL_MLFLOW = "local"  # --mlflow without a URI: a store in mlruns/ beside the run folders


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
        "distillation": ("teacher", "distill_temperature", "distill_weight", "unlabelled"),
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
    epochs: int | None = option(None, f"passes over the training data ({by_recipe('epochs')})",
                                minimum=1)
    batch_size: int | None = option(None, f"images per gradient step ({by_recipe('batch_size')})",
                                    minimum=1)
    optimizer: str = option("adamw", "the gradient-descent optimizer", choices=OPTIMIZERS,
                            kind="optimizer")
    lr: float | None = option(None, f"peak learning rate ({lr_by_recipe()}; 0 freezes every "
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
              f"validate, save and predict with it (0 turns it off; {by_recipe('ema')})",
        minimum=0, below=1)
    # Validation during training does not average flips. Data that must not be mirrored (digits)
    # never is.
    tta: bool | None = option(None, "predict and evaluate on each image and its mirror image, "
                                    f"averaged ({by_recipe('tta')})")
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
    # Knowledge distillation (Hinton et al., 2015): the loss mixes the teacher's softened
    # probabilities with the labels' cross-entropy.
    teacher: str | None = option(None, "learn from this run's outputs too (knowledge distillation): "
                                       "its softened probabilities on each training batch",
                                 metavar="RUN")
    distill_temperature: float = option(4.0, "distillation: the temperature that softens the "
                                             "teacher's and the student's probabilities", above=0,
                                        maximum=100)
    distill_weight: float = option(0.5, "distillation: the share of the loss that follows the "
                                        "teacher (the rest follows the labels)", minimum=0,
                                   maximum=1)
    unlabelled: str | None = option(None, "with --teacher: also train on the images of this "
                                          "folder (recursively), labelled by the teacher",
                                    metavar="DIR")
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
        None, f"backbone learning rate as a fraction of --lr ({by_recipe('backbone_lr')})",
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

