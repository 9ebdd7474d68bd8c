"""Where a training step's time goes, by stage and by op (torch.profiler), for a model and batch.

    .venv/bin/python bench/profile_step.py [--model fast] [--batch-size 128] [--steps 30]

The step is the one `cnnlab train` takes: a uint8 batch augmented (flips), cast to float in
channels_last, forward, label-smoothed cross-entropy, backward, AdamW, the weights' moving average.
The stages are timed with a plain clock (the profiler's own cost per op would inflate the stages of
many small ops); the ops are then grouped by kind from the profiler's self CPU time, so each
microsecond is counted once.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from cnnlab.base.devices import physical_cores
from cnnlab.config import AugmentConfig, TrainConfig
from cnnlab.data.augment import augment_batch
from cnnlab.models import create_model
from cnnlab.train.optim import make_optimizer

STAGES = ("augment", "forward", "loss", "backward", "optimizer", "weight average")
# The first pattern an op's name contains decides its kind (aten names, as the profiler lists them).
KINDS = (
    ("conv", ("convolution", "conv2d", "mkldnn_conv")),
    ("pooling", ("max_pool", "avg_pool", "adaptive")),
    ("batch norm", ("batch_norm",)),
    ("relu", ("relu", "threshold")),
    ("dense", ("addmm", "aten::mm", "linear")),
    ("dropout", ("dropout", "bernoulli", "aten::mul", "aten::div")),
    ("loss", ("log_softmax", "nll_loss", "cross_entropy")),
    ("optimizer and weight average", ("_foreach", "adamw", "lerp", "addcdiv", "addcmul", "sqrt")),
    ("data movement", ("copy_", "contiguous", "clone", "to_copy", "empty", "zero_", "fill_")),
    ("augmentation", ("flip", "where", "rand", "index")),
)


def kind_of(name: str) -> str:
    lowered = name.lower()
    for kind, patterns in KINDS:
        if any(pattern in lowered for pattern in patterns):
            return kind
    return "other"


def profile_steps(model_name: str, batch: int, steps: int) -> tuple[dict, dict, list, float]:
    """(seconds per stage, profiler microseconds per kind of op, the top ops, images stepped)."""
    torch.set_num_threads(physical_cores())
    torch.manual_seed(0)
    config = TrainConfig(model=model_name, batch_size=batch)
    model, _, _ = create_model(model_name, input_shape=(1, 28, 28), num_classes=10)
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = make_optimizer(model, config)
    averaged = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.99), use_buffers=True)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    images = torch.randint(0, 256, (batch, 1, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (batch,))
    generator = torch.Generator().manual_seed(0)

    seconds: dict[str, float] = defaultdict(float)

    def stage(name: str, work):
        started = time.perf_counter()
        with record_function(name):  # a no-op while no profiler listens
            result = work()
        seconds[name] += time.perf_counter() - started
        return result

    def step() -> None:
        x = stage("augment", lambda: augment_batch(images, AugmentConfig(resized_crop=0.0), True,
                                                   generator).contiguous(
                                                       memory_format=torch.channels_last))
        logits = stage("forward", lambda: model(x))
        loss = stage("loss", lambda: loss_fn(logits, labels))
        optimizer.zero_grad(set_to_none=True)
        stage("backward", loss.backward)
        stage("optimizer", optimizer.step)
        stage("weight average", lambda: averaged.update_parameters(model))

    for _ in range(10):
        step()
    seconds.clear()
    for _ in range(steps):
        step()
    stages = dict(seconds)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    kinds: dict[str, float] = defaultdict(float)
    for event in events:
        if event.key not in STAGES and not event.key.startswith("autograd::engine"):
            kinds[kind_of(event.key)] += event.self_cpu_time_total
    top = sorted(((e.self_cpu_time_total, e.key) for e in events if e.key not in STAGES),
                 reverse=True)[:12]
    return stages, dict(kinds), top, steps * batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="fast")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    stages, kinds, top, images = profile_steps(args.model, args.batch_size, args.steps)
    total = sum(stages.values())
    print(f"{args.model}, batch {args.batch_size}: {images / total:,.0f} images/s (without the "
          f"profiler)\n\n| stage | share |\n|---|---|")
    for stage in STAGES:
        print(f"| {stage} | {stages.get(stage, 0) / total:.0%} |")
    measured = sum(kinds.values())
    print("\n| kind of op (forward and backward) | share |\n|---|---|")
    for kind, micros in sorted(kinds.items(), key=lambda item: -item[1]):
        print(f"| {kind} | {micros / measured:.0%} |")
    print("\n| op | self share |\n|---|---|")
    for micros, name in top:
        print(f"| `{name}` | {micros / measured:.1%} |")


if __name__ == "__main__":
    main()
