"""Training progress: a rich bar on a terminal, one line per epoch in logs, nothing with quiet."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import Progress, TextColumn

from ..base.progress import progress_bar, stderr_console
from ..run.results import EpochRow


def format_row(row: EpochRow, total_epochs: int) -> str:
    val = (f"val loss {row.val_loss:.4f} acc {row.val_acc:.2%}" if row.has_validation
           else "no validation split")
    if row.val_robust_acc is not None:  # adversarial training only
        val += f" robust acc {row.val_robust_acc:.2%}"
    lr = f"lr {row.lr:.2e}" if row.lr is not None else "lr nan"
    return (f"epoch {row.epoch}/{total_epochs}  train loss {row.train_loss:.4f} "
            f"acc {row.train_acc:.2%}  {val}  {lr}  {row.seconds:.1f}s")


class Reporter:
    """Shows progress while training; `quiet` silences everything but errors."""

    def __init__(self, quiet: bool = False, console: Console | None = None) -> None:
        self.quiet = quiet
        self.console = console or stderr_console()
        self.live = not quiet and sys.stderr.isatty()
        self._progress: Progress | None = None
        self._task = None

    def message(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, highlight=False)

    def start_epoch(self, epoch: int, total_epochs: int, steps: int) -> None:
        if not self.live:
            return
        self._progress = progress_bar(f"epoch {epoch}/{total_epochs}",
                                      TextColumn("{task.fields[stats]}"), console=self.console)
        self._progress.start()
        self._task = self._progress.add_task("train", total=steps, stats="")

    def step(self, loss: float, accuracy: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1,
                                  stats=f"loss {loss:.4f} acc {accuracy:.2%}")

    def end_epoch(self, row: EpochRow, total_epochs: int) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self.message(format_row(row, total_epochs))
