"""Training-step throughput of the default model: threads x memory format, as ratios in one run.

    .venv/bin/python bench/train_step.py [--model fast] [--compare simple,fast] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import time

import torch
from isolated import in_own_process

from cnnlab.config import AugmentConfig
from cnnlab.data.augment import augment_batch
from cnnlab.devices import physical_cores
from cnnlab.models import create_model


def images_per_second(model_name: str, threads: int, channels_last: bool, batch: int,
                      steps: int) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, _, _ = create_model(model_name, input_shape=(1, 28, 28), num_classes=10)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    images = torch.randint(0, 256, (batch, 1, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (batch,))
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        x = augment_batch(images, AugmentConfig(), True, generator)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(5):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="fast")
    parser.add_argument("--compare", default="simple,fast",
                        help="networks to compare at every core with channels_last")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    cores = physical_cores()
    results = {(t, cl): in_own_process(images_per_second, args.model, t, cl, args.batch_size,
                                       args.steps)
               for t in sorted({1, cores}) for cl in (False, True)}
    baseline = results[(1, False)]
    print("| threads | memory format | images/s | vs 1 thread NCHW |")
    print("|---|---|---|---|")
    for (threads, channels_last), rate in results.items():
        layout = "channels_last" if channels_last else "NCHW"
        print(f"| {threads} | {layout} | {rate:,.0f} | {rate / baseline:.2f}x |")
    names = args.compare.split(",")
    rates = {name: in_own_process(images_per_second, name, cores, True, args.batch_size, args.steps)
             for name in names}
    print(f"\n| network ({cores} threads, channels_last) | images/s | vs {names[0]} |")
    print("|---|---|---|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} | {rate / rates[names[0]]:.2f}x |")


if __name__ == "__main__":
    main()
