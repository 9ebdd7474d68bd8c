"""A sweep of the default network against the default recipe on a seeded Fashion-MNIST subset
(BENCHMARKS.md, "Tuning").

    python bench/tune_sweep.py                    # 200 images a class, 4 epochs, 12 trials, median pruner
    python bench/tune_sweep.py --pruner none      # the same sweep without pruning: trials per hour
    python bench/tune_sweep.py --per-class 1000 --epochs 5 --trials 100 --budget 30m --retrain 15

Prints one JSON line: the default recipe's validation and test accuracy, and the sweep's trials
(complete, pruned), time, trials per hour, best validation accuracy and that trial's test accuracy.
With --retrain N, the best settings (best.yaml) and the default recipe are then trained on the
whole training set for N epochs and their test accuracies printed, over three seeds each where
the first seed's difference is under half a point.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import cnnlab

SEARCH = "lr=1e-3..3e-2:log batch_size=32|64|128 label_smoothing=0..0.2"
CLOSE = 0.005  # under half a point apart: measure three seeds each


def _sweep(args: argparse.Namespace, base: dict, folder: str) -> dict:
    default = cnnlab.train(**base, out=f"{folder}/default", quiet=True)
    started = time.perf_counter()
    result = cnnlab.tune(**base, search=SEARCH, trials=args.trials, budget=args.budget,
                         pruner=args.pruner, startup_trials=3, sampler_seed=0,
                         out=f"{folder}/sweep", quiet=True)
    seconds = time.perf_counter() - started
    best_test = json.loads((Path(result.best.run) / "results.json").read_text())["test_accuracy"]
    states = [r.state for r in result.trials]
    return {
        "images_per_class": args.per_class, "epochs": args.epochs, "pruner": args.pruner,
        "default_val": default.best_val_accuracy, "default_test": default.test_accuracy,
        "trials": len(states), "complete": states.count("complete"), "pruned": states.count("pruned"),
        "sweep_seconds": round(seconds, 1), "trials_per_hour": round(3600 * len(states) / seconds, 1),
        "best_val": result.best.value, "best_test": best_test, "best": result.best.params}


def _retrain(epochs: int, folder: str) -> dict:
    """Test accuracy of best.yaml and of the default recipe on the whole training set."""
    whole = {"per_class": None, "epochs": epochs, "threads": 2, "log": "none", "quiet": True}
    best_yaml = f"{folder}/sweep/best.yaml"

    def accuracies(seeds: list[int]) -> dict[str, list[float]]:
        return {
            "best": [cnnlab.train(best_yaml, seed=s, out=f"{folder}/best-{s}", **whole).test_accuracy
                     for s in seeds],
            "default": [cnnlab.train(data="fashion-mnist", seed=s, out=f"{folder}/default-{s}",
                                     **whole).test_accuracy for s in seeds]}

    found = accuracies([0])
    if abs(found["best"][0] - found["default"][0]) < CLOSE:
        more = accuracies([1, 2])
        found = {key: found[key] + more[key] for key in found}
    return {"retrain_epochs": epochs, "retrain_test": found,
            "retrain_mean": {key: round(statistics.mean(v), 4) for key, v in found.items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--budget", default=None)
    parser.add_argument("--pruner", default="median")
    parser.add_argument("--retrain", type=int, default=0, help="epochs on the whole set; 0: none")
    args = parser.parse_args()
    base = {"data": "fashion-mnist", "per_class": args.per_class, "epochs": args.epochs,
            "threads": 2, "log": "none"}
    with tempfile.TemporaryDirectory() as folder:
        numbers = _sweep(args, base, folder)
        print(json.dumps(numbers), flush=True)
        if args.retrain:
            numbers.update(_retrain(args.retrain, folder))
            print(json.dumps(numbers), flush=True)


if __name__ == "__main__":
    main()
