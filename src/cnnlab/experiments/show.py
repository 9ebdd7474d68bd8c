"""`cnnlab runs` and `cnnlab compare` on the terminal."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from rich import box
from rich.table import Table

from ..base.show import console, duration, percent, print_table
from .records import setting_label
from .table import formatted, show_setting, table_columns, table_rows

if TYPE_CHECKING:
    from .compare import Comparison, PairedTest
    from .settings import CompareSettings, RunsSettings
    from .table import RunsTable


def show_runs(result: RunsTable, settings: RunsSettings) -> int:
    """The runs as a table, or as CSV/JSON on stdout, or where --out wrote them."""
    for run in result.runs:
        if run.problem:
            print(f"warning: {run.problem}", file=sys.stderr)
    if result.format != "table":
        if result.written is not None:
            console.print(f"{len(result.runs)} runs written to {result.written}")
        else:
            sys.stdout.write(formatted(result))
        return 0
    if not result.runs:
        console.print(f"no run folders under {result.root} (train one: cnnlab train)")
        return 0
    compact = Table(title=f"{len(result.runs)} run{'s' * (len(result.runs) != 1)} under "
                          f"{result.root}", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in table_columns(result):
        compact.add_column(column)
    for row in table_rows(result):
        compact.add_row(*row)
    console.print(compact)
    return 0


def show_comparison(result: Comparison, settings: CompareSettings) -> int:
    if settings.quiet:
        return 0
    names, runs = list(result.names), result.runs
    for run in result.evaluated:
        console.print(f"evaluated {run} on its test split first (as `cnnlab evaluate {run}`)",
                      highlight=False)
    if result.settings:
        print_table("settings that differ", ["setting", *names],
                    [[setting_label(key), *(show_setting(run.settings.get(key), bool(run.settings))
                                            for run in runs)] for key in result.settings])
    else:
        console.print("the runs have the same settings")
    print_table("results", ["", *names], [
        ["best val accuracy", *(percent(run.best_val_accuracy) for run in runs)],
        ["test accuracy", *(percent(run.test_accuracy) for run in runs)],
        ["epochs", *(str(run.epochs) for run in runs)],
        ["time", *(duration(run.seconds) for run in runs)],
        ["status", *(run.status for run in runs)]])
    if any(cost is not None for cost in result.costs):
        _print_costs(names, result.costs)
    classes = result.class_names()
    if classes:
        print_table("per-class accuracy on the test split (recall)", ["class", *names],
                    [[name, *(percent(s.class_accuracy.get(name)) if s else "-"
                              for s in result.scores)] for name in classes])
    if result.pairs:
        _print_pairs(result.pairs)
    for note in result.notes:
        console.print(f"note: {note}", highlight=False)
    console.print(f"written to {result.folder}/: compare.json, curves.png")
    return 0


def _print_costs(names: list[str], costs: tuple) -> None:
    """What cnnlab compress measured of each run on this machine (ONNX Runtime)."""
    def each(text) -> list[str]:
        return [text(cost) if cost is not None else "-" for cost in costs]
    print_table("cost, as cnnlab compress measured it (ONNX Runtime)", ["", *names], [
        ["parameters", *each(lambda c: f"{c.parameters:,}")],
        ["FLOPs per image", *each(lambda c: f"{c.flops / 1e6:,.1f}M")],
        ["1 image, 1 thread (median)", *each(lambda c: f"{c.one_thread_ms:.3g} ms")],
        ["images/s in batches", *each(lambda c: f"{c.images_per_second:,.0f}")],
        ["ONNX file", *each(lambda c: f"{c.file_mb:.2f} MB")]])


def _print_pairs(pairs: tuple[PairedTest, ...]) -> None:
    """Each pair of runs scored on the same test images: who got which right, and the test."""
    print_table("pairs of runs scored on the same test images",
                ["run A", "run B", "images", "both right", "A alone right", "B alone right",
                 "both wrong", "disagree", "McNemar p", "verdict (5% level)"],
                [[p.first, p.second, f"{p.images:,}", f"{p.both_right:,}", f"{p.only_first:,}",
                  f"{p.only_second:,}", f"{p.both_wrong:,}",
                  f"{p.disagree:,} ({p.disagree / p.images:.1%})", f"{p.p_value:.3g}",
                  "they differ" if p.significant else "no significant difference"]
                 for p in pairs])
    console.print("disagree: images the two runs give different classes; McNemar's exact test "
                  "counts the images only one of them gets right" +
                  ("; p per pair, not adjusted for the number of pairs" if len(pairs) > 1 else ""),
                  highlight=False)
