"""How much each depth knows of the classes: the linear probe on each depth's pooled features, its
validation accuracy against depth, for trained runs and the ImageNet network a fine-tuned run
started from.

    .venv/bin/python bench/depth_probe.py --fine-tuned RUN --scratch RUN --fashion RUN
        [--most N] [--limit N] [--raw]

- flowers12 (--fine-tuned, --scratch: runs trained on ../shared/data/flowers12): the ImageNet-
  pretrained network before fine-tuning (the fine-tuned run's architecture with ImageNet's
  weights), the fine-tuned run, and the network trained from scratch; each probed on its own
  run's train split (fitted) and validation split (C chosen there, accuracy reported there).
- Fashion-MNIST (--fashion: a trained run), and its ImageNet start where it was fine-tuned.

Prints a markdown table per architecture (depth, layer, features, validation accuracy per model)
and the seconds of decoding each run's images (once, shared by its models), of each model's
forward pass over them with every depth hooked, and of its probes; writes
docs/explain/depth-probe-flowers12.png and docs/explain/depth-probe-fashion.png.
--raw probes the features unstandardised too, and prints the two side by side. --limit caps the
images of each split (default 5,000: Fashion-MNIST's 54,000 training images add little to a
linear probe of at most 1,280 features).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import cnnlab
from cnnlab.explain.depth_probe import (
    DepthScore,
    depth_features,
    depth_index,
    depth_layers,
    depth_probe_figure,
    pretrained_counterpart,
    probe_scores,
)
from cnnlab.run.data import pick_split

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "explain"


def in_memory(split):
    """A file split decoded once, shared by the models probed on it."""
    return split.to_memory()[0] if hasattr(split, "to_memory") else split


def run_splits(run: Path, card) -> tuple[object, object]:
    """The run's train and validation splits, decoded into memory (timed)."""
    started = time.perf_counter()
    train, val = (in_memory(pick_split(run, card, None, name)[0]) for name in ("train", "val"))
    print(f"- {run.name}: decoding {len(train)} + {len(val)} images "
          f"{time.perf_counter() - started:.1f}s")
    return train, val


def probe_model(label: str, model, card, splits, args: argparse.Namespace
                ) -> tuple[list[DepthScore], list[DepthScore] | None]:
    """One model's curve (and, with --raw, the curve without standardising), with its timings."""
    model = model.eval().to(memory_format=torch.channels_last)
    layers = depth_layers(model, card.input.shape, args.most)
    found, seconds = {}, {}
    for name, split in zip(("train", "val"), splits, strict=True):
        started = time.perf_counter()
        found[name] = depth_features(model, split, layers, limit=args.limit, channels_last=True)
        seconds[name] = time.perf_counter() - started
    depths = depth_index(model, card.input.shape)
    started = time.perf_counter()
    scores = probe_scores(found["train"], found["val"], card.num_classes, depths)
    probing = time.perf_counter() - started
    raw = probe_scores(found["train"], found["val"], card.num_classes, depths,
                       standardized=False) if args.raw else None
    images = {name: len(next(iter(features.values()))[1]) for name, features in found.items()}
    print(f"- {label}: {len(layers)} depths; train pass {seconds['train']:.1f}s "
          f"({images['train']} images, {card.input.height} px), val pass {seconds['val']:.1f}s "
          f"({images['val']}), probes {probing:.1f}s; total "
          f"{sum(seconds.values()) + probing:.1f}s")
    return scores, raw


def curves_of(runs: dict[str, Path | None], args: argparse.Namespace
              ) -> tuple[dict[str, list[DepthScore]], dict[str, list[DepthScore]]]:
    """Each run's curve, and before a fine-tuned run's, its ImageNet start's."""
    curves, raw = {}, {}
    for label, run in runs.items():
        if run is None:
            continue
        predictor = cnnlab.load(run, device="cpu", engine="torch")
        splits = run_splits(run, predictor.card)
        start = pretrained_counterpart(predictor.card)
        models = ([("pretrained, before fine-tuning", start)] if start is not None else []) + \
            [(label, predictor.model)]
        for name, model in models:
            curves[name], raw[name] = probe_model(name, model, predictor.card, splits, args)
    return curves, raw


def print_tables(curves: dict[str, list[DepthScore]], raw: dict[str, list[DepthScore]]) -> None:
    """A table per architecture: the models that share its depths side by side."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for label, scores in curves.items():
        groups.setdefault(tuple(s.layer for s in scores), []).append(label)
    for layers, labels in groups.items():
        columns = [f"{label}, val acc" for label in labels]
        columns += [f"{label}, unstandardised" for label in labels if raw.get(label)]
        print(f"\n| depth | layer | features | {' | '.join(columns)} |")
        print("|---" * (3 + len(columns)) + "|")
        for index, layer in enumerate(layers):
            first = curves[labels[0]][index]
            cells = [f"{curves[label][index].val_acc:.1%} (C={curves[label][index].c:g})"
                     for label in labels]
            cells += [f"{raw[label][index].val_acc:.1%}" for label in labels if raw.get(label)]
            print(f"| {first.depth} | {layer.removeprefix('network.')} | {first.features} | "
                  f"{' | '.join(cells)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fine-tuned", type=Path, help="a run fine-tuned on flowers12 from ImageNet")
    parser.add_argument("--scratch", type=Path, help="a run trained from scratch on flowers12")
    parser.add_argument("--fashion", type=Path, help="a run trained on Fashion-MNIST")
    parser.add_argument("--most", type=int, default=None,
                        help="up to this many depths (default: the stem and each stage's end)")
    parser.add_argument("--limit", type=int, default=5000, help="images of each split, at most")
    parser.add_argument("--raw", action="store_true", help="also probe unstandardised features")
    args = parser.parse_args()
    FIGURES.mkdir(parents=True, exist_ok=True)
    cases = {"flowers12": {"fine-tuned": args.fine_tuned, "from scratch": args.scratch},
             "fashion": {"trained": args.fashion}}
    for dataset, runs in cases.items():
        if not any(runs.values()):
            continue
        print(f"\n## {dataset}\n")
        curves, raw = curves_of(runs, args)
        print_tables(curves, raw)
        path = FIGURES / f"depth-probe-{dataset}.png"
        depth_probe_figure(curves, path, f"{dataset}: linear probe on each depth's pooled features")
        print(f"\nfigure: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
