"""What each CLI verb does with its parsed arguments: call the library, print the result."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .errors import CnnlabError

# Tables in a log file or pipe get a wide page instead of rich's 80-column default.
console = Console(soft_wrap=True)
if not console.is_terminal:
    console = Console(soft_wrap=True, width=160)

_TRAIN_OPTIONS = ("config", "resume", "quiet")


def run_train(args: argparse.Namespace) -> int:
    from .api import train

    options = vars(args).copy()
    options.pop("verb")
    config, resume, quiet = (options.pop(key, None) for key in _TRAIN_OPTIONS)
    if resume is not None and options:
        raise CnnlabError(f"--resume continues a run with its own config.yaml; drop "
                          f"{', '.join(sorted(options))}")
    nested: dict = {}
    for key, value in options.items():
        section, _, name = key.rpartition(".")
        (nested.setdefault(section, {}) if section else nested)[name] = value
    run = train(config, resume=resume, quiet=bool(quiet), **nested)
    _print_run(run, bool(quiet))
    return 1 if run.status == "diverged" else 0


def _print_run(run, quiet: bool) -> None:
    minutes, seconds = divmod(run.seconds, 60)
    took = f"{int(minutes)}m{seconds:04.1f}s" if minutes else f"{seconds:.1f}s"
    rows = [("status", run.status), ("best epoch", str(run.best_epoch)),
            ("val accuracy", f"{run.best_val_accuracy:.2%}" if run.best_val_accuracy else "-"),
            ("test accuracy", f"{run.test_accuracy:.2%}" if run.test_accuracy is not None else "-"),
            ("time", took), ("run folder", str(run.path))]
    if quiet:
        return
    table = Table(title="training finished", show_header=False)
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


def _parse_input(text: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)x(\d+)", text.strip().lower())
    if not match:
        raise CnnlabError(f"--input must look like 1x28x28 (channels x height x width), got {text!r}")
    return tuple(int(g) for g in match.groups())  # type: ignore[return-value]


def run_summary(args: argparse.Namespace) -> int:
    from .models.summary import SUMMARY_COLUMNS, human, summarize, summary_rows
    from .runfolder import read_meta

    model, shape, classes = args.model, (1, 28, 28), 10
    if Path(model).is_dir():
        meta = read_meta(Path(model))
        model = meta["architecture"]["spec"]
        shape = tuple(meta["input"][k] for k in ("channels", "height", "width"))
        classes = len(meta["class_names"])
    shape = _parse_input(args.input) if args.input else shape
    summary = summarize(model, shape, args.classes or classes)
    table = Table(title=f"{summary.name} on {'x'.join(map(str, shape))} input, "
                        f"{args.classes or classes} classes")
    for column in SUMMARY_COLUMNS:
        table.add_column(column, justify="left" if column == "layer" else "right")
    for row in summary_rows(summary):
        table.add_row(*row)
    console.print(table)
    conv, dense = summary.sharing
    console.print(f"total: {summary.params:,} parameters, {human(summary.flops)} FLOPs "
                  f"({human(summary.flops / 2)} multiply-adds) per image")
    if conv:
        console.print(f"parameter sharing: the conv layers use {conv:,} parameters; fully "
                      f"connected layers with the same input and output sizes would need "
                      f"{dense:,} ({dense / conv:,.0f}x more)")
    return 0


def run_datasets(args: argparse.Namespace) -> int:
    from .data import list_datasets
    from .data.builtin import download

    if args.download:
        download(args.download)
    rows = [[entry.name, "yes" if entry.is_present() else "no", entry.description, entry.where()]
            for entry in list_datasets()]
    rows.append(["PATH/", "-", "your folder: PATH/<class>/*.png, or PATH/{train,val,test}/<class>/",
                 "--data PATH"])
    rows.append(["FILE.csv", "-", "your CSV manifest: path,label[,split] rows", "--data FILE.csv"])
    _print_table("datasets", ["name", "here", "description", "location"], rows)
    return 0


def run_models(args: argparse.Namespace) -> int:
    from .models import list_models

    _print_table("named networks (or write your own: cnnlab layers)",
                 ["name", "description", "layers"],
                 [[entry.name, entry.description, entry.spec] for entry in list_models(args.pattern)])
    return 0


def run_layers(args: argparse.Namespace) -> int:
    from .models.spec import ALIASES, LAYERS

    rows = [[name, layer.help, ", ".join(a for a, target in ALIASES.items() if target == name)]
            for name, layer in LAYERS.items()]
    _print_table("the layer language: write layers in order, separated by spaces",
                 ["layer", "usage", "also written"], rows)
    console.print("example: conv(32, k=3, p=same) relu maxpool(2) conv(64, k=3) relu maxpool(2) "
                  "flatten dense(128) relu dropout(0.5) dense")
    return 0


def _print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
