"""Time to accuracy on Fashion-MNIST: cnnlab's recipes against a plain PyTorch baseline, one run.

    .venv/bin/python bench/time_to_accuracy.py [--recipes default,fashion-long] [--baseline-epochs 15]

The baseline is written the way the PyTorch tutorials write it: torchvision's FashionMNIST dataset,
a DataLoader with ToTensor and Normalize, the Keras-example CNN (conv 32 3x3, relu, maxpool 2, conv
64 3x3, relu, maxpool 2, flatten, dropout 0.5, dense 10), Adam 1e-3, batch 128, torch's default
threads. Each method runs in a process of its own, one after the other, so that its peak memory is
its own and nothing else competes for the cores. After every epoch the whole 10,000-image test set
is evaluated with the clock stopped: the times are training time only, for both.
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from isolated import in_own_process
from torch import nn

TARGETS = (0.90, 0.91, 0.92, 0.93, 0.94)
BASELINE = "baseline"
KERAS = "keras"
KERAS_VENV = Path(__file__).parent / ".keras-venv"
KERAS_PACKAGES = ("tensorflow-cpu", "keras")
BASELINES = (BASELINE, KERAS)


@dataclass
class Result:
    name: str
    seconds: list[float] = field(default_factory=list)  # cumulative training seconds per epoch
    accuracy: list[float] = field(default_factory=list)  # test accuracy after each epoch
    peak_mib: float = 0.0
    final: float | None = None  # what the recipe itself reports (its best model, its inference)

    def time_to(self, target: float) -> float | None:
        for seconds, accuracy in zip(self.seconds, self.accuracy, strict=True):
            if accuracy >= target:
                return seconds
        return None

    def per_epoch(self) -> float:
        return self.seconds[-1] / len(self.seconds)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def keras_cnn() -> nn.Sequential:
    """The CNN of the Keras MNIST example, in PyTorch."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(64 * 5 * 5, 10))


def _torchvision_root(folder: Path) -> Path:
    """torchvision's FashionMNIST reads uncompressed IDX files from ROOT/FashionMNIST/raw."""
    from cnnlab.data.builtin import find_idx, idx_folder

    source = idx_folder("fashion-mnist", "FashionMNIST")
    if source is None:
        raise SystemExit("Fashion-MNIST is missing: run `cnnlab datasets --download fashion-mnist`")
    raw = folder / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        path = find_idx(source, stem)
        with (gzip.open(path) if path.suffix == ".gz" else open(path, "rb")) as src, \
                open(raw / stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return folder


def run_baseline(epochs: int, per_class: int | None) -> Result:
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    from cnnlab.data.splits import first_per_class_indices

    torch.manual_seed(0)
    result = Result(BASELINE)
    with tempfile.TemporaryDirectory() as folder:
        root = _torchvision_root(Path(folder))
        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.2860,), (0.3530,))])
        train = datasets.FashionMNIST(root, train=True, transform=transform)
        test = datasets.FashionMNIST(root, train=False, transform=transform)
        if per_class:
            train = Subset(train, first_per_class_indices(train.targets, per_class).tolist())
        loader = DataLoader(train, batch_size=128, shuffle=True)
        test_loader = DataLoader(test, batch_size=1000)
        model = keras_cnn()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = nn.CrossEntropyLoss()
        elapsed = 0.0
        for _ in range(epochs):
            started = time.perf_counter()
            model.train()
            for images, labels in loader:
                optimizer.zero_grad()
                loss_fn(model(images), labels).backward()
                optimizer.step()
            elapsed += time.perf_counter() - started
            result.seconds.append(elapsed)
            result.accuracy.append(_baseline_accuracy(model, test_loader))
    result.final = result.accuracy[-1]
    result.peak_mib = _peak_mib()
    return result


def _last_line(text: str) -> str:
    return (text.strip().splitlines() or ["no output"])[-1]


def keras_python() -> tuple[Path | None, str]:
    """The interpreter of the Keras venv, made (once) beside this script; or None and why not."""
    python = KERAS_VENV / "bin" / "python"
    if not python.exists():
        made = subprocess.run([sys.executable, "-m", "venv", "--clear", str(KERAS_VENV)],
                              capture_output=True, text=True)
        if made.returncode != 0:
            return None, f"python -m venv failed: {_last_line(made.stderr)}"
    check = subprocess.run([str(python), "-c", "import keras, tensorflow"], capture_output=True)
    if check.returncode != 0:
        installed = subprocess.run([str(python), "-m", "pip", "install", "-q", *KERAS_PACKAGES],
                                   capture_output=True, text=True)
        if installed.returncode != 0:
            return None, f"pip install {' '.join(KERAS_PACKAGES)} failed: {_last_line(installed.stderr)}"
    return python, ""


def run_keras(epochs: int) -> Result | None:
    """Keras 3 on TensorFlow's CPU build (bench/keras_baseline.py), in its own venv and process."""
    from cnnlab.data.builtin import idx_folder

    python, why = keras_python()
    if python is None:
        print(f"{KERAS}: skipped, {why}", flush=True)
        return None
    source = idx_folder("fashion-mnist", "FashionMNIST")
    script = Path(__file__).with_name("keras_baseline.py")
    done = subprocess.run([str(python), str(script), str(source), str(epochs)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(f"{KERAS}: skipped, the Keras run failed: {_last_line(done.stderr)}", flush=True)
        return None
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    return Result(KERAS, measured["seconds"], measured["accuracy"], measured["peak_mib"],
                  measured["accuracy"][-1])


@torch.no_grad()
def _baseline_accuracy(model: nn.Module, loader) -> float:
    model.eval()
    correct = sum((model(images).argmax(1) == labels).sum().item() for images, labels in loader)
    return correct / len(loader.dataset)


def run_recipe(preset: str, per_class: int | None, epochs: int | None) -> Result:
    import cnnlab
    from cnnlab.config import DataConfig, TrainConfig, load_config
    from cnnlab.data import load_dataset
    from cnnlab.run.inference import loss_and_accuracy, predict_logits
    from cnnlab.train.recipes import resolve

    test = load_dataset(DataConfig()).test
    tta = resolve(TrainConfig() if preset == "default" else load_config(preset))[0].tta
    result = Result(preset)

    def record(model: nn.Module, row: dict) -> None:
        """Test accuracy as the recipe's predictions give it (with its test-time augmentation)."""
        device = next(model.parameters()).device
        model.flip_tta = tta
        try:
            logits, labels = predict_logits(model, test, device, channels_last=True)
        finally:
            model.flip_tta = False
        accuracy = loss_and_accuracy(logits, labels)[1]
        result.seconds.append((result.seconds[-1] if result.seconds else 0.0) + row.seconds)
        result.accuracy.append(accuracy)

    settings = {}
    if per_class:
        settings["data"] = {"per_class": per_class}
    if epochs:
        settings["epochs"] = epochs
    with tempfile.TemporaryDirectory() as folder:
        run = cnnlab.train(None if preset == "default" else preset, quiet=True,
                           out=f"{folder}/run", on_epoch_end=record, **settings)
    result.final = run.test_accuracy
    result.peak_mib = _peak_mib()
    return result


def _fmt_time(seconds: float | None) -> str:
    return "not reached" if seconds is None else f"{seconds:.0f} s"


def report(results: list[Result], baseline_epochs: int) -> str:
    lines = ["| method | " + " | ".join(f"to {t:.0%}" for t in TARGETS)
             + " | s/epoch | epochs | final test acc | peak RSS |",
             "|---|" + "---|" * (len(TARGETS) + 4)]
    for result in results:
        cells = [_fmt_time(result.time_to(t)) for t in TARGETS]
        lines.append(f"| {result.name} | " + " | ".join(cells) + f" | {result.per_epoch():.1f} | "
                     f"{len(result.seconds)} | {result.final:.2%} | {result.peak_mib:.0f} MiB |")
    for baseline in (r for r in results if r.name in BASELINES):
        lines += ["", f"Against {baseline.name} (its time / the recipe's; its {baseline_epochs} "
                      f"epochs take {baseline.seconds[-1]:.0f} s):", ""]
        lines += [f"- {result.name}: {ratios(result, baseline)}"
                  for result in results if result.name not in BASELINES]
    return "\n".join(lines)


def ratios(result: Result, baseline: Result) -> str:
    said = []
    for target in TARGETS:
        ours, theirs = result.time_to(target), baseline.time_to(target)
        if ours is not None and theirs is not None:
            said.append(f"{target:.0%}: {theirs / ours:.1f}x sooner")
        elif ours is not None:
            said.append(f"{target:.0%}: reached at {ours:.0f} s, {baseline.name} never")
    for target in (0.93, 0.94):  # the targets: shares of the baseline's whole run
        reached = result.time_to(target)
        if reached is not None:
            said.append(f"{target:.0%} at {reached / baseline.seconds[-1]:.2f} of its whole run")
    return "; ".join(said or ["no target reached"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", default="default,fashion-long",
                        help="comma-separated: default and/or preset names")
    parser.add_argument("--baseline-epochs", type=int, default=15)
    parser.add_argument("--epochs", type=int, help="override every recipe's epochs (smoke runs)")
    parser.add_argument("--per-class", type=int, help="train on the first N images of each class")
    parser.add_argument("--no-keras", action="store_true", help="leave out the Keras baseline")
    args = parser.parse_args()
    results = [in_own_process(run_baseline, args.baseline_epochs, args.per_class)]
    print(f"{BASELINE}: {results[0].accuracy[-1]:.2%} after {args.baseline_epochs} epochs", flush=True)
    keras = None if args.no_keras or args.per_class else run_keras(args.baseline_epochs)
    if keras is not None:
        results.append(keras)
        print(f"{KERAS}: {keras.final:.2%} after {args.baseline_epochs} epochs", flush=True)
    for recipe in args.recipes.split(","):
        results.append(in_own_process(run_recipe, recipe, args.per_class, args.epochs))
        print(f"{recipe}: {results[-1].final:.2%}", flush=True)
    print()
    print(report(results, args.baseline_epochs))


if __name__ == "__main__":
    main()
