"""Folder prediction throughput: 10,000 Fashion-MNIST test PNGs, DataLoader workers 0 against N.

    .venv/bin/python bench/predict_folder.py RUN [--images 10000] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from cnnlab.config import DataConfig
from cnnlab.data import load_dataset
from cnnlab.predict.predictor import Failure, predict_files
from cnnlab.run.predictor import load_predictor


def write_pngs(folder: Path, count: int) -> list[Path]:
    test = load_dataset(DataConfig()).test
    paths = []
    for index in range(count):
        path = folder / f"{index:05d}.png"
        Image.fromarray(test.images[index % len(test), 0].numpy()).save(path)
        paths.append(path)
    return paths


def images_per_second(run: str, paths: list[Path], workers: int, batch_size: int) -> float:
    predictor = load_predictor(run, "cpu")
    started = time.perf_counter()
    results = list(predict_files(predictor, paths, topk=5, batch_size=batch_size, workers=workers))
    elapsed = time.perf_counter() - started
    assert len(results) == len(paths) and not any(isinstance(r, Failure) for r in results)
    return len(paths) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run")
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as folder:
        paths = write_pngs(Path(folder), args.images)
        baseline = images_per_second(args.run, paths, 0, args.batch_size)
        parallel = images_per_second(args.run, paths, args.workers, args.batch_size)
    print("| DataLoader workers | images/s | vs 0 workers |")
    print("|---|---|---|")
    print(f"| 0 (decode in the main process) | {baseline:,.0f} | 1.00x |")
    print(f"| {args.workers} | {parallel:,.0f} | {parallel / baseline:.2f}x |")


if __name__ == "__main__":
    main()
