"""The learning-rate finder against the recipe's default rate: for each case, run the range test,
then train once with the recipe's rate and once with the suggested one, and compare test accuracy.

    .venv/bin/python bench/lr_find.py [--cases digits,fashion] [--threads N] [--out DIR]

Prints a Markdown table for BENCHMARKS.md. A case is data plus the training settings that fit this
machine (epochs, images per class); both runs of a case share every setting but the rate.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import cnnlab
from cnnlab.config.training_text import DEFAULT_LR, FINE_TUNE_LR

CASES = {
    "digits": {"data": "digits", "model": "simple", "epochs": 10, "batch_size": 64},
    "fashion": {"data": "fashion-mnist", "epochs": 3, "per_class": 1000},
    "flowers12": {"data": str(Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers12"),
                  "epochs": 3},
}


def _default_lr(run) -> float:
    config = run.config
    return (FINE_TUNE_LR if config.pretrained else DEFAULT_LR)[config.optimizer]


def measure(name: str, settings: dict, out: Path, threads: int) -> dict:
    common = {**settings, "threads": threads, "device": "cpu"}
    started = time.perf_counter()
    found = cnnlab.lr_find(quiet=True, out=str(out / f"{name}-lr-find"), **common).finding
    finding_seconds = time.perf_counter() - started
    default = cnnlab.train(quiet=True, out=str(out / f"{name}-default"), **common)
    suggested = cnnlab.train(quiet=True, out=str(out / f"{name}-suggested"), lr=found.suggestion,
                             **common)
    return {"case": name, "default_lr": _default_lr(default), "suggested_lr": found.suggestion,
            "steep": found.suggestions["steep"], "minimum": found.suggestions["minimum"],
            "default_acc": default.test_accuracy, "suggested_acc": suggested.test_accuracy,
            "finder_seconds": finding_seconds, "stopped": found.stopped}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="digits,fashion")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/bench-lr-find")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    print("| case | recipe's lr | valley (suggested) | steep | minimum/10 | test acc, recipe's lr "
          "| test acc, suggested | difference | finder time |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.cases.split(","):
        row = measure(name, CASES[name], out, args.threads)
        print(f"| {name} | {row['default_lr']:g} | {row['suggested_lr']:.2g} | {row['steep']:.2g} "
              f"| {row['minimum']:.2g} | {row['default_acc']:.2%} | {row['suggested_acc']:.2%} "
              f"| {100 * (row['suggested_acc'] - row['default_acc']):+.2f} points "
              f"| {row['finder_seconds']:.0f} s |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
