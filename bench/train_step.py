"""Training-step throughput of the default model: threads x memory format, networks, and the
levers of the step (optimizer, batch size, weight averaging, torch.compile), as ratios in one run.

    .venv/bin/python bench/train_step.py [--model fast] [--compare simple,fast] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import torch
from isolated import in_own_process

from cnnlab.base.devices import physical_cores
from cnnlab.config import AugmentConfig
from cnnlab.data.augment import augment_batch
from cnnlab.models import create_model


@dataclass(frozen=True)
class Lever:
    """One change to a training step of the network (2 threads, channels_last, foreach AdamW,
    batch 64, the weights' moving average updated after every step)."""

    name: str
    batch: int = 64
    fused: bool = False  # fused AdamW (one kernel for every parameter) instead of foreach
    ema: bool = True  # a moving average of the weights updated after every step
    compile: bool = False  # torch.compile (inductor) of the model, its first steps timed apart
    model: str | None = None


LEVERS = (
    Lever("batch 64, foreach AdamW, weight EMA (the reference)"),
    Lever("without the weight EMA", ema=False),
    Lever("fused AdamW", fused=True),
    Lever("batch 32", batch=32),
    Lever("batch 128 (as `cnnlab train` steps)", batch=128),
    Lever("batch 256", batch=256),
    Lever("torch.compile of the model (inductor)", compile=True),
    Lever("first conv with 16 filters instead of 32",
          model="conv(16, k=3, p=same) maxpool(2) bn relu conv(64, k=3, p=same) maxpool(2) bn relu "
                "flatten dense(128) relu dropout(0.25) dense"),
)


def images_per_second(model_name: str, threads: int, channels_last: bool, batch: int,
                      steps: int, lever: Lever | None = None) -> tuple[float, float]:
    """Images per second in the steady state, and the seconds the first steps took beyond it
    (compilation, where there is one)."""
    lever = lever or Lever("plain", batch=batch, ema=False)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, _, _ = create_model(lever.model or model_name, input_shape=(1, 28, 28), num_classes=10)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3, fused=lever.fused or None)
    averaged = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.99),
        use_buffers=True) if lever.ema else None
    if lever.compile:  # a cold compile, as a user's first run has it, in every round
        os.environ["TORCHINDUCTOR_FORCE_DISABLE_CACHES"] = "1"
    forward = torch.compile(model) if lever.compile else model
    batch = lever.batch
    images = torch.randint(0, 256, (batch, 1, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (batch,))
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        x = augment_batch(images, AugmentConfig(resized_crop=0.0), True, generator)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = torch.nn.functional.cross_entropy(forward(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if averaged is not None:
            averaged.update_parameters(model)

    started = time.perf_counter()
    for _ in range(5):
        step()
    warmup = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(steps):
        step()
    per_step = (time.perf_counter() - started) / steps
    return batch / per_step, warmup - 5 * per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="fast")
    parser.add_argument("--compare", default="simple,fast",
                        help="networks to compare at every core with channels_last")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--levers", action="store_true", help="only the table of levers")
    args = parser.parse_args()
    cores = physical_cores()
    if args.levers:
        print_levers(args.model, cores, args.steps)
        return
    results = {(t, cl): in_own_process(images_per_second, args.model, t, cl, args.batch_size,
                                       args.steps)[0]
               for t in sorted({1, cores}) for cl in (False, True)}
    baseline = results[(1, False)]
    print("| threads | memory format | images/s | vs 1 thread NCHW |")
    print("|---|---|---|---|")
    for (threads, channels_last), rate in results.items():
        layout = "channels_last" if channels_last else "NCHW"
        print(f"| {threads} | {layout} | {rate:,.0f} | {rate / baseline:.2f}x |")
    names = args.compare.split(",")
    rates = {name: in_own_process(images_per_second, name, cores, True, args.batch_size,
                                  args.steps)[0]
             for name in names}
    print(f"\n| network ({cores} threads, channels_last) | images/s | vs {names[0]} |")
    print("|---|---|---|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} | {rate / rates[names[0]]:.2f}x |")


def print_levers(model: str, cores: int, steps: int, rounds: int = 3) -> None:
    """Each lever in a process of its own, in rounds, interleaved; the best of its rounds counts
    (this machine's rate drifts by tens of percent over minutes, more than some levers move it)."""
    rates = {lever: [] for lever in LEVERS}
    for turn in range(rounds):  # each round starts with another lever: the first runs slower
        for lever in LEVERS[turn:] + LEVERS[:turn]:
            rates[lever].append(in_own_process(images_per_second, model, cores, True, lever.batch,
                                               steps, lever))
    best = {lever: max(runs) for lever, runs in rates.items()}
    baseline = best[LEVERS[0]][0]
    print(f"| lever ({model}, {cores} threads, channels_last) | images/s | vs the reference | "
          f"first 5 steps' extra seconds |\n|---|---|---|---|")
    for lever, (rate, extra) in best.items():
        print(f"| {lever.name} | {rate:,.0f} | {rate / baseline:.2f}x | {extra:.1f} |")


if __name__ == "__main__":
    main()
