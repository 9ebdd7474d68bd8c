"""Knowledge distillation for accuracy: a network trained alone against the same network, the
same recipe and seed, taught by a teacher run (`cnnlab train --teacher RUN`), both on one machine
in one run, each scored on the test split.

    .venv/bin/python bench/distill.py --teacher RUN [--data fashion-mnist] [--model fast]
        [--seeds 0] [--weight 0.5] [--temperature 4] [--out runs/bench-distill]

Prints a markdown table: for each seed, the test accuracy alone and taught, and the seconds of
each run (the taught run pays for the teacher's forward pass on every batch).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cnnlab
from cnnlab.run.folder import read_card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--model", default="fast")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--weight", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--out", default="runs/bench-distill")
    args = parser.parse_args()
    teacher = read_card(args.teacher)
    print(f"teacher {args.teacher}: {teacher.name}, test accuracy {teacher.test_accuracy:.2%}")
    print("| seed | alone | taught | difference | seconds alone | seconds taught |")
    print("|---|---|---|---|---|---|")
    for seed in (int(s) for s in args.seeds.split(",")):
        runs = {}
        for name, extra in (("alone", {}), ("taught", {"teacher": args.teacher,
                                                        "distill_weight": args.weight,
                                                        "distill_temperature": args.temperature})):
            runs[name] = cnnlab.train(data=args.data, model=args.model, seed=seed, quiet=True,
                                      out=str(Path(args.out) / f"{name}-{seed}"), log="none",
                                      calibrate=False, **extra)
        alone, taught = runs["alone"], runs["taught"]
        print(f"| {seed} | {alone.test_accuracy:.2%} | {taught.test_accuracy:.2%} | "
              f"{100 * (taught.test_accuracy - alone.test_accuracy):+.2f} points | "
              f"{alone.seconds:.0f} | {taught.seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
