"""CPU inference speed of the default model: batched throughput and batch-1 latency.

    .venv/bin/python bench/inference.py [RUN] [--model simple]

RUN is a run folder (its model as trained); without one, the default network with fresh weights
(speed does not depend on the weights). Threads x memory format in one run, as ratios against one
thread in PyTorch's default NCHW layout; the last row is `cnnlab.load(RUN).predict(array)` on one
28x28 uint8 image, preprocessing included.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
from isolated import in_own_process
from timing import timings
from torch import nn

from cnnlab.run.inference import eval_mode


def _model(run: str | None, name: str) -> nn.Module:
    if run:
        from cnnlab.run.folder import load_model

        return load_model(run, torch.device("cpu"))[0]
    from cnnlab.models import create_model

    torch.manual_seed(0)
    return create_model(name, input_shape=(1, 28, 28), num_classes=10)[0]


def measure_case(run: str | None, name: str, threads: int, channels_last: bool,
                 batch: int) -> tuple[float, float, float]:
    model = _model(run, name)
    with eval_mode(model):
        return measure(model, threads, channels_last, batch)


@torch.inference_mode()
def measure(model: nn.Module, threads: int, channels_last: bool, batch: int) -> tuple[float, float, float]:
    """(images/s at `batch`, batch-1 median ms, batch-1 95th percentile ms)."""
    torch.set_num_threads(threads)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    big = torch.rand(batch, 1, 28, 28).contiguous(memory_format=fmt)
    one = torch.rand(1, 1, 28, 28).contiguous(memory_format=fmt)
    throughput = batch / statistics.median(timings(lambda: model(big), 20))
    single = timings(lambda: model(one), 500)
    return throughput, statistics.median(single) * 1e3, np.percentile(single, 95) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", nargs="?")
    parser.add_argument("--model", default="simple")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    rows = [(threads, channels_last, *in_own_process(measure_case, args.run, args.model, threads,
                                                     channels_last, args.batch_size))
            for threads in (1, 2) for channels_last in (False, True)]
    base_throughput, base_latency = rows[0][2], rows[0][3]
    print(f"| threads | memory format | images/s (batch {args.batch_size}) | vs baseline | "
          f"batch-1 median ms | batch-1 p95 ms | vs baseline |")
    print("|---|---|---|---|---|---|---|")
    for threads, channels_last, throughput, median, p95 in rows:
        print(f"| {threads} | {'channels_last' if channels_last else 'NCHW'} | {throughput:,.0f} | "
              f"{throughput / base_throughput:.2f}x | {median:.3f} | {p95:.3f} | "
              f"{base_latency / median:.2f}x |")
    if args.run:
        import cnnlab

        predictor = cnnlab.load(args.run, device="cpu")
        image = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
        single = timings(lambda: predictor.predict(image, topk=1), 300)
        print(f"\ncnnlab.load(RUN).predict(one 28x28 array): median "
              f"{statistics.median(single) * 1e3:.3f} ms, p95 {np.percentile(single, 95) * 1e3:.3f} ms "
              f"({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
