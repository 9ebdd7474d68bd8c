"""How close the default model's conv layers run to this CPU's fp32 matrix-multiply ceiling.

    .venv/bin/python bench/conv_efficiency.py [--model simple] [--batch-size 128]

The ceiling is the best rate of large fp32 matrix products (torch.mm, and a 1x1 convolution,
which oneDNN runs as one product) with the threads training uses. Each conv layer of the model then
runs alone on a batch of the shape it sees in training (channels_last, as cnnlab trains), forward
and forward + backward; its rate counts 2 FLOPs per multiply-add: the forward product, and in
backward the weight gradient and (except for a first layer, whose input needs none) the input
gradient.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from cnnlab.base.devices import set_threads
from cnnlab.models import create_model


def _best_seconds(step, repeats: int = 7, inner: int = 5) -> float:
    step()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(inner):
            step()
        best = min(best, (time.perf_counter() - started) / inner)
    return best


def matmul_ceiling(sizes=(512, 1024, 2048)) -> tuple[float, str]:
    """Best fp32 GFLOP/s of a large matrix product, and what gave it. Two libraries do matrix
    products here: torch.mm calls MKL, convolutions call oneDNN; on some CPUs (AMD's among them)
    MKL takes a slower code path, so a 1x1 convolution, which oneDNN runs as one matrix product,
    is timed too and the better of the two is the ceiling."""
    results = []
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        seconds = _best_seconds(lambda a=a, b=b: torch.mm(a, b))
        results.append((2 * n ** 3 / seconds / 1e9, f"torch.mm {n}x{n}"))
    for channels in (256, 512):
        conv = nn.Conv2d(channels, channels, 1, bias=False).to(memory_format=torch.channels_last)
        x = torch.randn(64, channels, 16, 16).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            seconds = _best_seconds(lambda conv=conv, x=x: conv(x))
        flops = 2 * 64 * 16 * 16 * channels * channels
        results.append((flops / seconds / 1e9, f"1x1 conv as a {64 * 256}x{channels}x{channels} "
                                               f"product"))
    for rate, what in results:
        print(f"  {what}: {rate:.1f} GFLOP/s")
    return max(results)


def conv_inputs(model: nn.Module, batch: torch.Tensor) -> list[tuple[nn.Conv2d, torch.Tensor]]:
    """Each Conv2d with the input it receives for `batch` (found with forward hooks)."""
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((m, i[0].detach())))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(batch)
    for hook in hooks:
        hook.remove()
    return seen


def conv_rates(conv: nn.Conv2d, x: torch.Tensor, first: bool) -> tuple[float, float, float]:
    """(forward GFLOP/s, forward + backward GFLOP/s, MFLOPs per image forward) for one conv."""
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_(not first)
    out = conv(x)
    macs = out.numel() * conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]
    forward_flops = 2 * macs
    grad = torch.randn_like(out)

    def forward() -> None:
        with torch.no_grad():
            conv(x)

    def train_step() -> None:
        conv.zero_grad(set_to_none=True)
        conv(x).backward(grad)

    forward_s, train_s = _best_seconds(forward), _best_seconds(train_step)
    train_flops = forward_flops * (2 if first else 3)
    return forward_flops / forward_s / 1e9, train_flops / train_s / 1e9, forward_flops / len(x) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="simple")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, help="default: one per physical core, as training")
    args = parser.parse_args()
    threads = set_threads(args.threads)
    print(f"{threads} threads; fp32 matrix products:")
    ceiling, what = matmul_ceiling()
    print(f"ceiling: {ceiling:.1f} GFLOP/s ({what})\n")
    torch.manual_seed(0)
    model, _, _ = create_model(args.model, input_shape=(1, 28, 28), num_classes=10)
    model = model.to(memory_format=torch.channels_last)
    batch = torch.rand(args.batch_size, 1, 28, 28)
    print("| conv layer | input | MFLOPs/image | forward GFLOP/s | of ceiling | "
          "forward+backward GFLOP/s | of ceiling |")
    print("|---|---|---|---|---|---|---|")
    total_flops = total_seconds = 0.0
    for index, (conv, x) in enumerate(conv_inputs(model, batch)):
        forward, train, mflops = conv_rates(conv, x, first=index == 0)
        shape = "x".join(str(s) for s in x.shape[1:])
        print(f"| {index + 1}: {conv.in_channels}->{conv.out_channels}, {conv.kernel_size[0]}x"
              f"{conv.kernel_size[1]} | {shape} | {mflops:.2f} | {forward:.1f} | "
              f"{forward / ceiling:.0%} | {train:.1f} | {train / ceiling:.0%} |")
        flops = mflops * (2 if index == 0 else 3)
        total_flops += flops
        total_seconds += flops / train
    overall = total_flops / total_seconds
    print(f"\nall conv layers, forward+backward, weighted by their FLOPs: {overall:.1f} GFLOP/s, "
          f"{overall / ceiling:.0%} of the ceiling")


if __name__ == "__main__":
    main()
