"""Fine-tuning EfficientNet-Lite0 on flowers12: this round's recipe against last round's, in one run.

    .venv/bin/python bench/fine_tune.py [--old-source DIR] [--per-class N]

Each case is the whole `cnnlab train --data flowers12` command, timed from outside by the wall
clock: the interpreter's start, loading the photos, the probe-first head, the epochs, the test and
the calibration. Each runs in a fresh process of its own, one after the other, on the default
threads, into a fresh run folder and a fresh cache folder (so each exports its own ONNX graph
of the pretrained backbone, as a user's first run does).

- last round's recipe: 6 epochs, every layer training (`--epochs 6 --freeze-stages 0`);
- this round's recipe: cnnlab's default (4 epochs; the stem and the stages at 1/8 of the input side
  or finer keep ImageNet's weights);
- with --old-source DIR (a checkout of an earlier commit), first: the default command with that
  checkout's code (its src/ first on PYTHONPATH), to separate the recipe's gain from the
  command's (the test and calibration passes in channels-last, the probe in the vectors' span).

"vs the first" is each wall time over the first row's.

--per-class shrinks the training set for a quick look (and the test that keeps this script working).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOWERS = ROOT.parent / "shared" / "data" / "flowers12"
CASES = {
    "last round's recipe": ["--epochs", "6", "--freeze-stages", "0"],
    "this round's recipe (default)": [],
}
PROBE_SECONDS = re.compile(r"train acc [\d.]+%, ([\d.]+)s\); now ")


def run_case(arguments: list[str], folder: Path, source: Path | None) -> dict:
    """One `cnnlab train` in a fresh process: its wall time, peak memory and what it recorded."""
    environment = {**os.environ, "CNNLAB_CACHE": str(folder / "cache")}
    if source is not None:
        environment["PYTHONPATH"] = str(source / "src")
    command = ["/usr/bin/time", "-f", "peak-kib %M", sys.executable, "-m", "cnnlab", "train",
               "--data", str(FLOWERS), "--out", str(folder / "run"), *arguments]
    started = time.perf_counter()
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    run = folder / "run"
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    config = (run / "config.yaml").read_text()
    probe = PROBE_SECONDS.search(done.stderr + done.stdout)
    return {"wall": seconds, "epochs": len(rows),
            "epoch": sum(float(row["seconds"]) for row in rows) / len(rows),
            "probe": float(probe.group(1)) if probe else float("nan"),
            "stages": re.search(r"freeze_stages: (\S+)", config).group(1)
            if "freeze_stages" in config else "-",
            "test": json.loads((run / "results.json").read_text())["test_accuracy"],
            "peak_gib": int(done.stderr.rsplit("peak-kib ", 1)[1].split()[0]) / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--old-source", type=Path, default=None,
                        help="a checkout of an earlier commit: its default command too")
    parser.add_argument("--per-class", type=int, default=None,
                        help="quick look: only the first N training images of each class")
    args = parser.parse_args()
    if not FLOWERS.is_dir():
        raise SystemExit(f"flowers12 is not at {FLOWERS}")
    cases = [(name, arguments, None) for name, arguments in CASES.items()]
    if args.old_source is not None:  # first: the row the others are measured against
        cases.insert(0, (f"default command, code of {args.old_source.name}", [], args.old_source))
    extra = ["--per-class", str(args.per_class)] if args.per_class else []
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as root:
        for index, (name, arguments, source) in enumerate(cases):
            result = run_case(arguments + extra, Path(root) / str(index), source)
            results[name] = result
            rows.append(f"| {name} | {result['epochs']} | {result['stages']} | "
                        f"{result['epoch']:.1f} | {result['probe']:.1f} | {result['wall']:.0f} | "
                        f"{result['wall'] / results[cases[0][0]]['wall']:.2f}x | "
                        f"{result['peak_gib']:.1f} | {result['test']:.2%} |")
            print(rows[-1], file=sys.stderr, flush=True)  # progress; the table is on stdout
    print("\n| command | epochs | stages kept | s an epoch | probe s | wall s | vs the first "
          "| peak GiB | test accuracy |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
