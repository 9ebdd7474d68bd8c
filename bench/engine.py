"""The fast engine against PyTorch, whole commands end to end, on flowers12's photos.

    .venv/bin/python bench/engine.py [--run RUN] [--repeats 3]

Without --run, trains the linear probe on EfficientNet-Lite0 (`--freeze backbone`) first; the
network is what matters for speed, and predict and evaluate time the same network whatever its
head learned. Each command runs alone, `--repeats` times, in a fresh process; the median is kept.
Cases:
- `cnnlab predict RUN flowers12/test` (240 photos) and `cnnlab evaluate RUN`, --engine torch
  against --engine onnx with its graph already made (RUN/engine/), and the first onnx run, which
  makes it;
- the probe's whole `cnnlab train --freeze backbone`, --engine torch against auto, with the
  backbone's graph already in the cache folder, and the first run, which makes it.
Results are compared too: top-1 identical and probabilities within 1e-4 on the 240 photos,
evaluate's accuracy identical, the probe's test accuracy identical.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOWERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers12"
CLI = [sys.executable, "-m", "cnnlab"]


def _timed(words: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(words, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def _median(words: list[str], env: dict, repeats: int) -> float:
    return statistics.median(_timed(words, env) for _ in range(repeats))


def _probe(out: Path, engine: str) -> list[str]:
    return [*CLI, "train", "--data", str(FLOWERS), "--freeze", "backbone", "--engine", engine,
            "--out", str(out), "--quiet"]


def _predictions(run: Path, engine: str, env: dict, out: Path) -> list[dict]:
    subprocess.run([*CLI, "predict", str(run), str(FLOWERS / "test"), "--engine", engine,
                    "--topk", "12", "--out", str(out)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def _agreement(torch_rows: list[dict], onnx_rows: list[dict]) -> tuple[bool, float]:
    """Top-1 identical on every photo, and the largest probability difference."""
    same_top1, largest = True, 0.0
    for ours, theirs in zip(torch_rows, onnx_rows, strict=True):
        same_top1 &= ours["top"][0]["name"] == theirs["top"][0]["name"]
        a = {s["name"]: s["probability"] for s in ours["top"]}
        b = {s["name"]: s["probability"] for s in theirs["top"]}
        largest = max(largest, max(abs(a[name] - b[name]) for name in a))
    return same_top1, largest


def _verb_cases(run: Path, env: dict, repeats: int) -> list[tuple[str, float, float, float]]:
    rows = []
    for verb, extra in (("predict", [str(FLOWERS / "test"), "--format", "json"]),
                        ("evaluate", ["--quiet"])):
        words = [*CLI, verb, str(run), *extra]
        shutil.rmtree(run / "engine", ignore_errors=True)
        first = _timed([*words, "--engine", "onnx"], env)  # makes RUN/engine/
        eager = _median([*words, "--engine", "torch"], env, repeats)
        fast = _median([*words, "--engine", "onnx"], env, repeats)
        rows.append((f"cnnlab {verb}", eager, fast, first))
    return rows


def _probe_case(env: dict, repeats: int, work: Path) -> tuple[str, float, float, float, float,
                                                               float]:
    cache = Path(env["CNNLAB_CACHE"]) / "engine"
    accuracy = {}

    def once(engine: str, name: str) -> float:
        out = work / name
        shutil.rmtree(out, ignore_errors=True)
        seconds = _timed(_probe(out, engine), env)
        accuracy[engine] = json.loads((out / "results.json").read_text())["test_accuracy"]
        return seconds

    for graph in cache.glob("features-*"):
        graph.unlink()
    first = once("auto", "probe-first")
    eager = statistics.median(once("torch", f"probe-torch-{i}") for i in range(repeats))
    fast = statistics.median(once("auto", f"probe-auto-{i}") for i in range(repeats))
    return ("cnnlab train --freeze backbone", eager, fast, first, accuracy["torch"],
            accuracy["auto"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="an EfficientNet-Lite0 run on flowers12 (default: trained)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        env = {**os.environ, "CNNLAB_OFFLINE": "1"}
        env.setdefault("CNNLAB_CACHE", str(Path.home() / ".cache" / "cnnlab"))
        probe = _probe_case(env, args.repeats, work)
        run = Path(args.run) if args.run else work / "probe-auto-0"
        rows = _verb_cases(run, env, args.repeats)
        same_top1, largest = _agreement(_predictions(run, "torch", env, work / "torch.json"),
                                        _predictions(run, "onnx", env, work / "onnx.json"))
    print("| command | --engine torch, s | onnx, s | vs torch | first onnx run (makes the graph), s |")
    print("|---|---|---|---|---|")
    for name, eager, fast, first in [*rows, probe[:4]]:
        print(f"| `{name}` | {eager:.1f} | {fast:.1f} | {eager / fast:.2f}x | {first:.1f} |")
    print(f"\npredict on flowers12/test (240 photos): top-1 identical {same_top1}, largest "
          f"probability difference {largest:.1e}")
    print(f"probe's test accuracy: torch {probe[4]:.4f}, onnx {probe[5]:.4f}")


if __name__ == "__main__":
    main()
