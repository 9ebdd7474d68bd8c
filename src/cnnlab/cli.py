"""Command-line interface: argument parsing only; the work is done by the functions it calls."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .config import preset_names
from .errors import CnnlabError, suggest

VERBS = ("train", "evaluate", "predict", "explain", "attack", "summary", "datasets", "models",
         "layers")

# (flag, config key, type, help); flags left out keep the config's (or default) value.
TRAIN_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--data", "data.name", str, "dataset name, folder of class folders, or CSV manifest"),
    ("--model", "model", str, "named network, layer spec string, YAML file, or timm:NAME "
     "(default: fast; for a folder of RGB photos, the pretrained timm:efficientnet_lite0)"),
    ("--epochs", "epochs", int, "passes over the training data (default 15; fine-tuning 6)"),
    ("--batch-size", "batch_size", int, "images per gradient step (default 128; fine-tuning 32)"),
    ("--lr", "lr", float, "peak learning rate (default 5e-3 adam/adamw, 0.1 sgd; fine-tuning "
     "5e-4 and 0.01)"),
    ("--optimizer", "optimizer", str, "sgd | adam | adamw"),
    ("--momentum", "momentum", float, "SGD momentum"),
    ("--weight-decay", "weight_decay", float, "L2 penalty (decoupled for adamw)"),
    ("--schedule", "schedule", str, "onecycle | cosine | step | none"),
    ("--warmup", "warmup", float, "onecycle: fraction of training rising to the peak lr (0.1)"),
    ("--label-smoothing", "label_smoothing", float, "cross-entropy label smoothing"),
    ("--patience", "patience", int, "early stopping: epochs without a better val accuracy"),
    ("--seed", "seed", int, "random seed (CPU training is deterministic with it)"),
    ("--device", "device", str, "auto | cpu | cuda | mps"),
    ("--threads", "threads", int, "CPU threads (default: one per physical core)"),
    ("--out", "out", str, "run folder (default runs/<data>-<model>, numbered)"),
    ("--val-fraction", "data.val_fraction", float, "share of train held out for validation"),
    ("--image-size", "data.image_size", int, "resize images to this square side (default: as stored)"),
    ("--channels", "data.channels", int, "1 (grayscale) or 3 (RGB); default: as the images are"),
    ("--workers", "data.workers", int, "DataLoader workers that decode image files"),
    ("--per-class", "data.per_class", int, "keep only the first N training images of each class"),
    ("--interpolation", "data.interpolation", str, "resizing filter: nearest | bilinear | bicubic"),
    ("--freeze", "freeze", str, "backbone: keep the pretrained features and fit only the head, "
     "to convergence (an exact linear probe)"),
    ("--freeze-epochs", "freeze_epochs", int, "fine-tuning: train the head alone this many epochs first"),
    ("--backbone-lr", "backbone_lr", float,
     "fine-tuning: backbone learning rate as a fraction of --lr (default 0.2)"),
    ("--crop-padding", "augment.crop_padding", int, "random crop after padding; 0 turns it off"),
    ("--erasing", "augment.erasing", float, "random erasing probability"),
    ("--rotation", "augment.rotation", float, "random rotation, max degrees"),
    ("--resized-crop", "augment.resized_crop", float,
     "random resized crops keeping at least this share of the area (default: 0.35 fine-tuning, "
     "else 0 = off)"),
    ("--crop-size", "augment.crop_size", int,
     "with --resized-crop: train on crops of this side (default: 6/7 of the input fine-tuning); "
     "evaluation keeps the input size"),
    ("--adversarial", "adversarial", str, "adversarial training: fgsm (with a random start) | pgd"),
    ("--adv-eps", "adv_eps", float, "adversarial training epsilon, pixel units in [0, 1] (default 0.1)"),
    ("--adv-steps", "adv_steps", int, "PGD steps per batch in adversarial training (default 7)"),
    ("--adv-step-size", "adv_step_size", float,
     "adversarial step size (default: 1.25 eps for fgsm, 2.5 eps / steps for pgd)"),
]
TRAIN_SWITCHES: list[tuple[str, str, bool, str]] = [
    ("--nesterov", "nesterov", True, "Nesterov momentum for SGD"),
    ("--pretrained", "pretrained", True, "ImageNet weights for a timm model (--model timm:NAME)"),
    ("--no-feature-cache", "feature_cache", False, "with --freeze backbone: do not cache features"),
    ("--no-probe-first", "probe_first", False,
     "fine-tuning: start from a zero head instead of the fitted linear probe"),
    ("--train-bn", "freeze_bn", False,
     "fine-tuning: let batch norm update its statistics (default: keep the pretrained ones)"),
    ("--strict", "data.strict", True, "stop on an unreadable image instead of skipping it"),
    ("--stream", "data.stream", True, "stream image files instead of holding them in memory"),
    ("--flip", "augment.flip", True, "random horizontal flips (default: where the data allows)"),
    ("--no-flip", "augment.flip", False, "no horizontal flips"),
    ("--tta", "tta", True, "predict and evaluate on each image and its mirror image, averaged"),
    ("--class-weights", "class_weights", True, "weigh the loss by inverse class frequency"),
    ("--no-amp", "amp", False, "no mixed precision on CUDA"),
    ("--no-channels-last", "channels_last", False, "keep the NCHW memory format"),
]


class Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line with a suggestion, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        if message.startswith("unrecognized arguments:"):
            flag = message.split(":", 1)[1].split()[0]
            message += suggest(flag, self._all_options())
        raise CnnlabError(f"{self.prog}: {message}")

    def _all_options(self) -> list[str]:
        options = []
        for action in self._actions:
            options.extend(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                for parser in action.choices.values():
                    options.extend(parser._all_options())
        return options


def _add_train(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train a CNN and write a run folder",
                            argument_default=argparse.SUPPRESS, allow_abbrev=False)
    parser.add_argument("--config", help=f"YAML run config, or a preset: "
                                         f"{', '.join(preset_names())}; flags override it")
    parser.add_argument("--resume", metavar="RUN", help="continue RUN from its last.ckpt")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    for flag, key, kind, text in TRAIN_FLAGS:
        parser.add_argument(flag, dest=key, type=kind, help=text)
    for flag, key, value, text in TRAIN_SWITCHES:
        parser.add_argument(flag, dest=key, action="store_const", const=value, help=text)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("evaluate", help="metrics, confusion matrix, calibration, mistakes",
                            allow_abbrev=False)
    parser.add_argument("run", help="run folder")
    parser.add_argument("--data", default=None, help="other data with the same classes "
                                                     "(default: the run's own)")
    parser.add_argument("--split", default="test", help="test | val")
    parser.add_argument("--max-shift", type=int, default=3,
                        help="translation test: shift images by 0..N pixels (0 turns it off)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="auto")


def _add_predict(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("predict", help="top-k classes for images, folders, globs, videos",
                            allow_abbrev=False)
    parser.add_argument("run", help="run folder, or pretrained:NAME for an ImageNet model "
                                    "(e.g. pretrained:efficientnet_lite0)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, folders (recursive), globs ('imgs/*.png'), videos")
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--format", default="table", choices=("table", "json", "csv"))
    parser.add_argument("--output", default=None, help="write the json/csv here, not to stdout")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for folders")
    parser.add_argument("--fps", type=float, default=1.0, help="video frames sampled per second")
    parser.add_argument("--device", default="auto")


def _add_explain(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("explain", help="feature maps, filters, saliency, Grad-CAM, embedding",
                            allow_abbrev=False)
    parser.add_argument("run", help="run folder")
    parser.add_argument("images", nargs="*", metavar="IMAGE",
                        help="images to explain (not needed for filters and embedding)")
    parser.add_argument("--method", default="gradcam",
                        help="feature-maps | filters | saliency | integrated-gradients | gradcam | "
                             "occlusion | embedding | all")
    parser.add_argument("--layer", default=None, help="layer name (see --list-layers); default: "
                                                      "every conv layer / the last one for gradcam")
    parser.add_argument("--target", default=None, help="class name or index to explain "
                                                       "(default: the predicted class)")
    parser.add_argument("--out", default=None, help="output folder (default RUN/explain)")
    parser.add_argument("--split", default="test", help="embedding: test | val")
    parser.add_argument("--limit", type=int, default=2000, help="embedding: images to map")
    parser.add_argument("--projection", default="tsne", help="embedding: tsne | pca")
    parser.add_argument("--list-layers", action="store_true", help="print the layer names and exit")
    parser.add_argument("--device", default="auto")


def _add_attack(sub: argparse._SubParsersAction) -> None:
    units = ("Epsilon is in pixel units of the original image, [0, 1], before normalization; "
             "adversarial images are clipped to [0, 1].")
    parser = sub.add_parser("attack", help="FGSM/PGD robust accuracy against epsilon, adversarial "
                                           "examples", description=units, allow_abbrev=False)
    parser.add_argument("run", help="run folder")
    parser.add_argument("--method", default="pgd", help="fgsm | pgd (default pgd, random start)")
    parser.add_argument("--eps", default="0,0.01,0.03,0.1",
                        help="epsilons, comma-separated (default 0,0.01,0.03,0.1). " + units)
    parser.add_argument("--steps", type=int, default=10, help="PGD steps (default 10)")
    parser.add_argument("--step-size", type=float, default=None,
                        help="PGD step length in the chosen norm (default 2.5 eps / steps)")
    parser.add_argument("--norm", default="linf", help="linf | l2 (l2: PGD only)")
    parser.add_argument("--data", default=None, help="other data with the same classes "
                                                     "(default: the run's own)")
    parser.add_argument("--split", default="test", help="test | val")
    parser.add_argument("--limit", type=int, default=1000,
                        help="attack the first N images of the split (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of PGD's random start")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="auto")


def build_parser() -> Parser:
    parser = Parser(prog="cnnlab", description="Design, train and study CNNs on images.",
                    allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
    _add_train(sub)
    _add_evaluate(sub)
    _add_explain(sub)
    _add_predict(sub)
    _add_attack(sub)
    summary = sub.add_parser("summary", help="per-layer shapes, parameters, FLOPs, receptive field",
                             allow_abbrev=False)
    summary.add_argument("model", help="named network, layer spec string, YAML file or run folder")
    summary.add_argument("--input", default=None, help="input CxHxW, e.g. 1x28x28 or 3x32x32")
    summary.add_argument("--classes", type=int, default=None, help="number of classes")
    datasets = sub.add_parser("datasets", help="list datasets and whether they are here",
                              allow_abbrev=False)
    datasets.add_argument("--download", metavar="NAME", help="download a dataset into the cache")
    models = sub.add_parser("models", help="list the named networks", allow_abbrev=False)
    models.add_argument("pattern", nargs="?", default="*", help="filter, e.g. 'res*'")
    sub.add_parser("layers", help="the layer language: every layer and its arguments")
    return parser


def _check_verb(argv: list[str]) -> None:
    first = next((a for a in argv if not a.startswith("-")), None)
    if first is not None and first not in VERBS:
        raise CnnlabError(f"unknown command {first!r}{suggest(first, VERBS)}; "
                          f"commands: {', '.join(VERBS)}")


def _setup_logging() -> None:
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING, stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _setup_logging()
    try:
        _check_verb(argv)
        args = build_parser().parse_args(argv)
        if args.verb is None:
            build_parser().print_help()
            return 0
        from . import commands

        return getattr(commands, f"run_{args.verb}")(args)
    except CnnlabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
