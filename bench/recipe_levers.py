"""What each setting of the training recipe does to test accuracy epoch by epoch, on Fashion-MNIST.

    .venv/bin/python bench/recipe_levers.py [--variants b128,b128-ema,...] [--parallel 2]

Each variant is `cnnlab train` (the `fast` network, flips, AdamW one-cycle at 5e-3, label smoothing
0.1) with the settings it names, 15 epochs, in a process of its own with
one thread (two run side by side on 2 cores: accuracies are what this measures, and training is
deterministic; seconds come from bench/time_to_accuracy.py). After every epoch the whole test set
is evaluated twice, as the network predicts and with flip test-time augmentation. Prints one table
row per variant: test accuracy after epochs 1, 2, 4, 8 and the last, and the first epoch at 90%
and at 93%.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

HEAD = "flatten dense(128) relu dropout(0.25) dense"
# (name, settings changed from the default recipe, what it tests)
# Each spells out the settings it tests, so that its row keeps its meaning when the defaults move.
VARIANTS: dict[str, tuple[dict, str]] = {
    "b128": ({"batch_size": 128, "warmup": 0.1, "ema": 0.0, "whiten": False},
             "batch 128, 10% warmup, no weight averaging (the recipe of the first round)"),
    "b128-ema": ({"batch_size": 128, "warmup": 0.1, "ema": 0.99, "whiten": False},
                 "the same with the weights' EMA"),
    "b128-ema-w05": ({"batch_size": 128, "warmup": 0.05, "ema": 0.99, "whiten": False},
                     "the same with a 5% warmup"),
    "b128-ema-w02": ({"batch_size": 128, "warmup": 0.02, "ema": 0.99, "whiten": False},
                     "batch 128 with the EMA and a 2% warmup"),
    "b128-ema-w02-whiten": ({"batch_size": 128, "warmup": 0.02, "ema": 0.99, "whiten": True},
                            "the same with the first conv started whitened (the fashion-quick preset)"),
    "b64-ema-w05": ({"batch_size": 64, "warmup": 0.05, "ema": 0.99, "whiten": False},
                    "the same at batch 64"),
    "b64-w05": ({"batch_size": 64, "warmup": 0.05, "ema": 0.0, "whiten": False},
                "batch 64, 5% warmup, no weight averaging"),
    "b32-ema-w05": ({"batch_size": 32, "warmup": 0.05, "ema": 0.99, "whiten": False},
                    "batch 32 with the EMA"),
    "conv1-16": ({"batch_size": 64, "warmup": 0.05, "ema": 0.99, "whiten": False,
                  "model": "conv(16, k=3, p=same) maxpool(2) bn relu conv(64, k=3, p=same) "
                           "maxpool(2) bn relu " + HEAD},
                 "b64-ema-w05 with 16 first-layer filters instead of 32"),
}
SHOWN_EPOCHS = (1, 2, 4, 8)


def accuracies(settings: dict) -> list[tuple[float, float]]:
    """(plain, flip TTA) test accuracy after each epoch of one training run."""
    import tempfile

    import torch

    import cnnlab
    from cnnlab.config import DataConfig
    from cnnlab.data import load_dataset
    from cnnlab.run.inference import loss_and_accuracy, predict_logits

    torch.set_num_threads(1)
    test = load_dataset(DataConfig()).test
    found = []

    def record(model: torch.nn.Module, row: dict) -> None:
        pair = []
        for tta in (False, True):
            model.flip_tta = tta
            pair.append(loss_and_accuracy(*predict_logits(model, test, torch.device("cpu"),
                                                          channels_last=True))[1])
        model.flip_tta = False
        found.append(tuple(pair))

    with tempfile.TemporaryDirectory() as folder:
        cnnlab.train(quiet=True, out=f"{folder}/run", on_epoch_end=record, threads=1, **settings)
    return found


def first_epoch(found: list[tuple[float, float]], target: float, column: int) -> str:
    return next((str(i + 1) for i, pair in enumerate(found) if pair[column] >= target), "-")


def row(name: str, found: list[tuple[float, float]]) -> str:
    def cell(pair: tuple[float, float]) -> str:
        return f"{pair[0]:.2%} / {pair[1]:.2%}"

    cells = [cell(found[e - 1]) for e in SHOWN_EPOCHS] + [cell(found[-1])]
    firsts = [f"{first_epoch(found, t, 0)} / {first_epoch(found, t, 1)}" for t in (0.90, 0.93)]
    return f"| {name} | " + " | ".join(cells + firsts) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--parallel", type=int, default=2, help="runs side by side")
    args = parser.parse_args()
    names = args.variants.split(",")
    with ProcessPoolExecutor(args.parallel, mp_context=get_context("spawn"),
                             max_tasks_per_child=1) as pool:
        futures = {name: pool.submit(accuracies, VARIANTS[name][0]) for name in names}
        print("test accuracy, plain / with flip TTA:\n")
        print("| variant | " + " | ".join(f"epoch {e}" for e in SHOWN_EPOCHS)
              + " | last epoch | first epoch at 90% | first epoch at 93% |")
        print("|---|" + "---|" * (len(SHOWN_EPOCHS) + 3))
        for name in names:
            print(row(name, futures[name].result()), flush=True)
    print()
    for name in names:
        print(f"- {name}: {VARIANTS[name][1]}")


if __name__ == "__main__":
    main()
