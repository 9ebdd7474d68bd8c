"""`cnnlab runs` on 200 run folders: the listing in-process and the whole command, against the
command's own start-up (Python and cnnlab's imports).

    .venv/bin/python bench/runs_table.py [--runs 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cnnlab.base.fileio import atomic_write_json, atomic_write_text
from cnnlab.config import TrainConfig, apply_overrides
from cnnlab.experiments.table import list_runs, to_csv
from cnnlab.run import folder
from cnnlab.run.results import EpochRow, TrainingResults


def write_run(path: Path, number: int, epochs: int = 15) -> None:
    """A finished run folder, written as training writes it (config, metrics per epoch, results)."""
    config = apply_overrides(TrainConfig(), {"data.name": "fashion-mnist", "epochs": epochs,
                                             "lr": [1e-3, 3e-3, 1e-2][number % 3],
                                             "seed": number % 5, "out": str(path)})
    path.mkdir(parents=True)
    atomic_write_text(path / folder.CONFIG, config.to_yaml())
    history = [EpochRow.measured(e, (1 / e, 0.8), (1 / e, 0.85 + e / 200), 1e-3, 20.0)
               for e in range(1, epochs + 1)]
    folder.write_metrics(path, history)
    results = TrainingResults(status="finished", epochs=epochs, best_epoch=epochs,
                              best_val_accuracy=history[-1].val_acc, test_accuracy=0.9, seconds=300.0)
    atomic_write_json(path / folder.RESULTS, results.to_dict())


def median_seconds(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        for number in range(args.runs):
            write_run(root / f"run-{number:03d}", number)
        listing = median_seconds(lambda: to_csv(list_runs(root)), args.repeats)
        command = median_seconds(lambda: subprocess.run(
            [sys.executable, "-m", "cnnlab", "runs", str(root)], check=True,
            stdout=subprocess.DEVNULL), args.repeats)
        as_csv = median_seconds(lambda: subprocess.run(
            [sys.executable, "-m", "cnnlab", "runs", str(root), "--format", "csv"], check=True,
            stdout=subprocess.DEVNULL), args.repeats)
        start_up = median_seconds(lambda: subprocess.run(
            [sys.executable, "-m", "cnnlab", "--version"], check=True,
            stdout=subprocess.DEVNULL), args.repeats)
    print(f"| {args.runs} run folders (median of {args.repeats}) | seconds | vs start-up |")
    print("|---|---|---|")
    print(f"| `cnnlab --version` (Python and cnnlab's imports) | {start_up:.3f} | 1.00x |")
    print(f"| list_runs + CSV, in-process | {listing:.3f} | {listing / start_up:.2f}x |")
    print(f"| `cnnlab runs DIR` (the whole command, table printed) | {command:.3f} | "
          f"{command / start_up:.2f}x |")
    print(f"| `cnnlab runs DIR --format csv` | {as_csv:.3f} | {as_csv / start_up:.2f}x |")


if __name__ == "__main__":
    main()
