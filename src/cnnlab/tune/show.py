"""`cnnlab tune` on the terminal: the trials, the importance of each setting, the best."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich import box
from rich.table import Table

from ..base.show import console, duration

if TYPE_CHECKING:
    from .run import TuneResult
    from .settings import TuneSettings


def show_tune(result: TuneResult, settings: TuneSettings) -> int:
    """The study's table; 1 when every trial that ran failed."""
    if not settings.quiet:
        _print_trials(result)
        _print_outcome(result)
    failed_only = result.best is None and any(r.state == "failed" for r in result.trials)
    return 1 if failed_only else 0


def _print_trials(result: TuneResult) -> None:
    names = result.space.names()
    table = Table(title=f"study {result.study!r}: {result.counted} of {result.total} trials "
                        f"({result.stopped})", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ["trial", "state", result.metric, *names, "epochs", "time", "run folder"]:
        table.add_column(column)
    for r in result.trials:
        best = result.best is not None and r.number == result.best.number
        table.add_row(str(r.number), f"{r.state}, {r.reason}" if r.reason else r.state,
                      _metric(result.metric, r.value), *(_param(r.params.get(n)) for n in names),
                      str(r.epochs), duration(r.seconds), r.run or "-",
                      style="bold green" if best else None)
    console.print(table)


def _print_outcome(result: TuneResult) -> None:
    names = result.space.names()
    if result.importances:
        console.print("importance of each setting (Optuna's PED-ANOVA over the completed trials): "
                      + ", ".join(f"{k} {v:.2f}" for k, v in result.importances.items()),
                      highlight=False)
    else:
        console.print(f"importance of each setting: {result.importance_note}", highlight=False)
    if result.best is not None:
        b = result.best
        console.print(f"best: trial {b.number}, {result.metric} {_metric(result.metric, b.value)}: "
                      + " ".join(f"{n}={_param(b.params.get(n))}" for n in names), highlight=False)
    console.print(f"written to {result.folder}/: {', '.join(result.files)}"
                  + (f"; train the best: cnnlab train --config {result.folder / 'best.yaml'}"
                     if "best.yaml" in result.files else ""), highlight=False)


def _metric(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if metric == "val_loss" else f"{value:.2%}"


def _param(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else ("-" if value is None else str(value))
