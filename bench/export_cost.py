"""What an exported model costs and keeps: eager PyTorch against ONNX Runtime fp32 and int8.

    .venv/bin/python bench/export_cost.py --fashion-run RUN --flowers-run RUN
    .venv/bin/python bench/export_cost.py --train    # trains both first (about 10 minutes here)

For each run: `cnnlab export --int8` (its parity figures give the test accuracies), then each case
in a process of its own: images/s at batch 256, batch-1 median and 95th-percentile latency, file
size. Eager PyTorch runs as `cnnlab predict` does (eval mode, inference mode, channels_last); all
cases use the same number of threads. The rows print as a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch
from isolated import in_own_process
from timing import timings

import cnnlab

CASES = ("eager PyTorch", "ONNX Runtime fp32", "ONNX Runtime int8")
FLOWERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers12"


def _model(case: str, run: str, export: str):
    from cnnlab.models.onnx import OnnxClassifier
    from cnnlab.run.folder import load_model

    if case == CASES[0]:
        model, _ = load_model(run, "cpu")
        return model.eval().to(memory_format=torch.channels_last)
    name = "model.onnx" if case == CASES[1] else "model.int8.onnx"
    return OnnxClassifier(Path(export) / name, threads=torch.get_num_threads())


@torch.inference_mode()
def measure(case: str, run: str, export: str, shape: tuple[int, ...], threads: int,
            batch: int, repeats: int) -> tuple[float, float, float]:
    """(images/s at `batch`, batch-1 median ms, batch-1 p95 ms) of one case, in its own process."""
    torch.set_num_threads(threads)
    model = _model(case, run, export)
    big = torch.rand(batch, *shape).contiguous(memory_format=torch.channels_last)
    one = torch.rand(1, *shape).contiguous(memory_format=torch.channels_last)
    throughput = batch / statistics.median(timings(lambda: model(big), 5))
    single = timings(lambda: model(one), repeats)
    return throughput, statistics.median(single) * 1e3, float(np.percentile(single, 95)) * 1e3


def _train(root: Path) -> tuple[str, str]:
    fashion = cnnlab.train(out=str(root / "fashion"), quiet=True)
    flowers = cnnlab.train(data=str(FLOWERS), out=str(root / "flowers"), quiet=True)
    return str(fashion.path), str(flowers.path)


def _rows(name: str, run: str, threads: int, batch: int) -> list[str]:
    result = cnnlab.export(run, int8=True, quiet=True)
    parity, card = result.manifest.parity, result.manifest.card
    accuracy = {CASES[0]: parity.fp32.eager_accuracy, CASES[1]: parity.fp32.onnx_accuracy,
                CASES[2]: parity.int8.int8_accuracy}
    size = {CASES[0]: (Path(run) / "model.safetensors").stat().st_size,
            CASES[1]: (result.folder / "model.onnx").stat().st_size,
            CASES[2]: (result.folder / "model.int8.onnx").stat().st_size}
    repeats = 300 if card.input.height <= 64 else 60
    rows, base = [], None
    for case in CASES:
        images_s, median, p95 = in_own_process(measure, case, run, str(result.folder),
                                               card.input.shape, threads, batch, repeats)
        base = base or (images_s, median)
        rows.append(f"| {name} | {case} | {images_s:,.0f} | {images_s / base[0]:.2f}x | "
                    f"{median:.2f} | {p95:.2f} | {base[1] / median:.2f}x | "
                    f"{size[case] / 1e6:.2f} MB | {accuracy[case]:.2%} |")
    agreement = parity.fp32.top1_agreement
    print(f"{name}: fp32 max |logit difference| {parity.fp32.max_abs_logit_difference:.1e}, "
          f"top-1 agreement {agreement:.2%}; int8 reduce_range {parity.int8.reduce_range}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fashion-run", help="a run of the default recipe on Fashion-MNIST")
    parser.add_argument("--flowers-run", help="a run of EfficientNet-Lite0 on flowers12")
    parser.add_argument("--train", action="store_true", help="train both runs first")
    parser.add_argument("--root", default="runs/bench-export", help="where --train writes")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    fashion, flowers = args.fashion_run, args.flowers_run
    if args.train:
        fashion, flowers = _train(Path(args.root))
    rows = []
    for name, run in (("default network, Fashion-MNIST", fashion),
                      ("EfficientNet-Lite0, flowers12", flowers)):
        if run:
            rows += _rows(name, run, args.threads, args.batch_size)
    print(f"| model | runtime | images/s (batch {args.batch_size}) | vs eager | batch-1 median ms | "
          f"batch-1 p95 ms | vs eager | file | test accuracy |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
