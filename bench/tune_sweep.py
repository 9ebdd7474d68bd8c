"""A sweep of the default network against the default recipe on a seeded Fashion-MNIST subset
(BENCHMARKS.md, "Tuning").

    python bench/tune_sweep.py                    # 200 images a class, 4 epochs, 12 trials, median pruner
    python bench/tune_sweep.py --pruner none      # the same sweep without pruning: trials per hour
    python bench/tune_sweep.py --per-class 1000 --epochs 5 --trials 100 --budget 30m

Prints one JSON line: the default recipe's validation and test accuracy, and the sweep's trials
(complete, pruned), time, trials per hour, best validation accuracy and that trial's test accuracy.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cnnlab

SEARCH = "lr=1e-3..3e-2:log batch_size=32|64|128 label_smoothing=0..0.2"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--budget", default=None)
    parser.add_argument("--pruner", default="median")
    args = parser.parse_args()
    base = {"data": "fashion-mnist", "per_class": args.per_class, "epochs": args.epochs,
            "threads": 2, "log": "none"}
    with tempfile.TemporaryDirectory() as folder:
        default = cnnlab.train(**base, out=f"{folder}/default", quiet=True)
        started = time.perf_counter()
        result = cnnlab.tune(**base, search=SEARCH, trials=args.trials, budget=args.budget,
                             pruner=args.pruner, startup_trials=3, sampler_seed=0,
                             out=f"{folder}/sweep", quiet=True)
        seconds = time.perf_counter() - started
        best_test = json.loads((Path(result.best.run) / "results.json").read_text())["test_accuracy"]
    states = [r.state for r in result.trials]
    print(json.dumps({
        "images_per_class": args.per_class, "epochs": args.epochs, "pruner": args.pruner,
        "default_val": default.best_val_accuracy, "default_test": default.test_accuracy,
        "trials": len(states), "complete": states.count("complete"), "pruned": states.count("pruned"),
        "sweep_seconds": round(seconds, 1), "trials_per_hour": round(3600 * len(states) / seconds, 1),
        "best_val": result.best.value, "best_test": best_test, "best": result.best.params}))


if __name__ == "__main__":
    main()
