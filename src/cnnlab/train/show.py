"""`cnnlab train` and `cnnlab lr-find` on the terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

from ..base.distributed import ranks_from_environment
from ..base.show import console, print_table

if TYPE_CHECKING:
    from .loop import Run
    from .lr_find import LrFindResult
    from .settings import LrFindSettings, TrainRunSettings


def show_run(run: Run, settings: TrainRunSettings) -> int:
    """How training ended, in a table (under torchrun, rank 0 speaks); 1 when it diverged."""
    if not settings.quiet and ranks_from_environment().is_main:
        table = Table(title="training finished", show_header=False)
        for key, value in _run_rows(run):
            table.add_row(key, value)
        console.print(table)
    return 1 if run.status == "diverged" else 0


def _run_rows(run: Run) -> list[tuple[str, str]]:
    minutes, seconds = divmod(run.seconds, 60)
    took = f"{int(minutes)}m{seconds:04.1f}s" if minutes else f"{seconds:.1f}s"
    return [("status", run.status), ("best epoch", str(run.best_epoch)),
            ("val accuracy", f"{run.best_val_accuracy:.2%}" if run.best_val_accuracy is not None
             else "no validation split"),
            ("test accuracy", f"{run.test_accuracy:.2%}" if run.test_accuracy is not None else "-"),
            ("time", took), ("run folder", str(run.path))]


RULE_TEXT = {"valley": "a little past the first third of the longest fall of the loss",
             "steep": "where the loss falls fastest",
             "minimum": "a tenth of the rate of least loss"}


def show_lr_find(result: LrFindResult, settings: LrFindSettings) -> int:
    """Each rule's suggested rate, and the command that trains with the one taken."""
    if settings.quiet:
        return 0
    found = result.finding
    print_table(f"learning-rate range test: {len(found.lrs)} steps from {found.lrs[0]:.0e}, "
                f"{found.stopped}", ["rule", "suggested rate", "how it is read"],
                [[name + (" (taken)" if name == found.rule else ""), f"{rate:.2e}", RULE_TEXT[name]]
                 for name, rate in found.suggestions.items()])
    console.print(f"train with it: cnnlab train ... --lr {found.suggestion:.2g}   (curve: "
                  f"{result.folder / 'lr_find.png'})", highlight=False)
    return 0
