"""A trial trained by several processes: torchrun starts `cnnlab train --config OUT/trial-007.yaml`
as a user would, and the sweep follows the run folder's metrics.csv to report each epoch.

Beside the run folder stay OUT/trial-007.yaml (what was launched) and OUT/trial-007.log (torchrun's
and every process's output).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..base.errors import CnnlabError
from ..base.fileio import atomic_write_text, remove_stale_temp_files
from ..config import TrainConfig, apply_overrides
from ..run.folder import (
    CHECKPOINT,
    META,
    METRICS,
    RESULTS,
    new_run_dir,
    read_card,
    read_metrics,
    write_results,
)
from ..run.results import EpochRow, TrainingResults
from ..train import Run, TrainingStopped

POLL_SECONDS = 0.2
SAVE_SECONDS = 30  # the most a checkpoint may take to write (a large model, a slow disk)
# torchrun gives its processes 30 s to stop on a signal before it kills them; this waits for it.
STOP_SECONDS = 60
# The line an exception ends its traceback with, or cnnlab's own one-line error.
ERROR_LINE = re.compile(r"error: .+|[A-Za-z_][\w.]*(?:Error|Exception)\b.*")
SIGNAL_LINE = re.compile(r"Signal \d+ \(\w+\) received by PID \d+")


class TrialCrashed(Exception):
    """The trial's processes ended with an error of their own: a crash, out of memory, a kill."""


def fit_on_processes(config: TrainConfig, processes: int, *,
                     on_epoch_end: Callable[[EpochRow], None]) -> Run:
    """Train `config` on `processes` processes under torchrun and return the Run its folder holds.

    `on_epoch_end(row)` runs as each epoch reaches metrics.csv; a TrainingStopped it raises stops
    the processes (as Ctrl-C stops `cnnlab train`) and the run's results.json takes its status.
    Raises CnnlabError for a mistake in the settings (train's one line), TrialCrashed otherwise."""
    run_dir = new_run_dir(config.out, "trial")  # made empty now, so that train takes this one
    config = apply_overrides(config, {"out": str(run_dir)})
    launch = atomic_write_text(run_dir.with_name(f"{run_dir.name}.yaml"), config.to_yaml())
    log = run_dir.with_name(f"{run_dir.name}.log")
    started = time.perf_counter()
    with open(log, "wb") as output, _terminate_as_interrupt():
        # A session of its own: a Ctrl-C in the terminal reaches the sweep, which stops the trial.
        process = subprocess.Popen(_command(launch, processes), stdin=subprocess.DEVNULL,
                                   stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _follow(process, run_dir, on_epoch_end)
        except TrainingStopped as stop:
            _stop_after_epoch(process, run_dir)
            _record_stop(run_dir, stop.status, time.perf_counter() - started)
            return _run(run_dir, config)
        except BaseException:  # Ctrl-C, or the sweep's own error: the trial stops with it
            _stop(process)
            raise
    return _ended(process.returncode, run_dir, config, log)


def _command(launch: Path, processes: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            str(processes), "-m", "cnnlab", "train", "--config", str(launch)]


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a batch scheduler's stop) ends the sweep as Ctrl-C does, so that the trial's
    processes, in a session of their own, are stopped too instead of left running."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt("terminated")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: signals are not ours to take
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _follow(process: subprocess.Popen, run_dir: Path,
            on_epoch_end: Callable[[EpochRow], None]) -> None:
    """Pass on each epoch as metrics.csv gains it (written whole, by os.replace), until the
    processes end; the epochs finished after the last look are passed on after the end."""
    reported = 0
    while True:
        ended = _waited(process, POLL_SECONDS)
        rows = read_metrics(run_dir)
        for row in rows[reported:]:
            on_epoch_end(row)
        reported = len(rows)
        if ended:
            return


def _waited(process: subprocess.Popen, seconds: float) -> bool:
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


def _stop_after_epoch(process: subprocess.Popen, run_dir: Path) -> None:
    try:
        _wait_for_checkpoint(process, run_dir)
    finally:  # a Ctrl-C while waiting stops the processes all the same
        _stop(process)


def _wait_for_checkpoint(process: subprocess.Popen, run_dir: Path) -> None:
    """Wait until the last epoch in metrics.csv has its checkpoint, which train writes after the
    row, so that a trial stopped after an epoch keeps all of it, as one stopped in-process does."""
    deadline = time.monotonic() + SAVE_SECONDS
    while not _checkpointed(run_dir) and time.monotonic() < deadline:
        if _waited(process, POLL_SECONDS / 4):
            return


def _checkpointed(run_dir: Path) -> bool:
    try:
        return (run_dir / CHECKPOINT).stat().st_mtime_ns >= (run_dir / METRICS).stat().st_mtime_ns
    except FileNotFoundError:
        return False


def _stop(process: subprocess.Popen) -> None:
    """SIGINT to torchrun's process group: torchrun passes it on to each training process (each in
    a session of its own), which stops as on Ctrl-C, its run folder whole. What has not stopped
    in STOP_SECONDS, or at a second Ctrl-C, is killed."""
    if process.poll() is not None:
        return
    workers = _children(process.pid)
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        _kill(process, workers)
    except KeyboardInterrupt:
        _kill(process, workers)
        raise


def _children(pid: int) -> list[int]:
    """The processes `pid` started (Linux's /proc; none known elsewhere)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:  # the task ended meanwhile
            continue
    return found


def _kill(process: subprocess.Popen, workers: list[int]) -> None:
    for group in (process.pid, *workers):
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
    process.wait()


def _record_stop(run_dir: Path, status: str, seconds: float) -> None:
    """results.json as fit writes it for a run an epoch callback stopped: the epochs the folder
    holds, its best model's epoch and accuracy, the test accuracy only where training got to it."""
    remove_stale_temp_files(run_dir)  # none of the processes writes any more
    card = read_card(run_dir) if (run_dir / META).is_file() else None
    earlier = TrainingResults.read(run_dir / RESULTS) if (run_dir / RESULTS).is_file() else None
    write_results(run_dir, TrainingResults(
        status=status, epochs=len(read_metrics(run_dir)), best_epoch=(card.epoch or 0) if card else 0,
        best_val_accuracy=card.val_accuracy if card else None,
        test_accuracy=earlier.test_accuracy if earlier else None, seconds=round(seconds, 1)))


def _run(run_dir: Path, config: TrainConfig) -> Run:
    """The Run as fit returns it, from the folder's results.json and metrics.csv."""
    results = TrainingResults.read(run_dir / RESULTS)
    return Run(run_dir, config, read_metrics(run_dir), results.best_epoch,
               results.best_val_accuracy, results.test_accuracy, results.seconds, results.status)


def _ended(returncode: int, run_dir: Path, config: TrainConfig, log: Path) -> Run:
    """The Run the processes left, or why they left none."""
    results = run_dir / RESULTS
    # A run that diverges is a run folder that says so (train exits 1 for it).
    if results.is_file() and (returncode == 0 or TrainingResults.read(results).status == "diverged"):
        return _run(run_dir, config)
    reason = last_error(log.read_text(encoding="utf-8", errors="replace"))
    if reason.startswith("error: "):  # train refused the settings: every trial would fail alike
        raise CnnlabError(reason.removeprefix("error: "))
    raise TrialCrashed(reason or f"its processes ended with exit code {returncode} and no "
                                 f"{RESULTS}; see {log}")


def last_error(output: str) -> str:
    """The last error a training process printed: cnnlab's one line, or the last line of a
    traceback; else the signal torchrun saw one die of; else ''. torchrun's own report of the
    failure is left out."""
    lines = [line.strip() for line in output.splitlines()]
    errors = [line for line in lines if ERROR_LINE.fullmatch(line)
              and not line.startswith("torch.distributed.")]
    if errors:
        return errors[-1][:200]
    signals = [match[0] for line in lines if (match := SIGNAL_LINE.search(line))]
    return signals[-1] if signals else ""
