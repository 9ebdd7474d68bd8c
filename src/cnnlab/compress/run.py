"""`cnnlab compress RUN`: candidates made, distilled and measured; the fastest within the budget
becomes a run folder of its own.

Every candidate trains in a work folder beside the output; the chosen one is calibrated and
exported there, and only then moved into place whole, so a failure or a kill leaves no half-written
run folder. The choice reads the validation split only; the test split is reported beside it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base.devices import set_threads
from ..base.errors import CnnlabError
from ..base.fileio import atomic_write_text, process_alive, replacing
from ..base.settings import resolve
from ..calibrate import calibrate_run
from ..config import load_config
from ..data.splits import DatasetSplits
from ..export import export_run
from ..models import Classifier
from ..run.contract import ModelCard
from ..run.data import run_dataset
from ..run.folder import CONFIG, RESULTS, export_of, load_model, read_card, write_card, write_results
from ..run.results import TrainingResults
from ..train import fit
from .candidates import Candidate, candidates, pruned_copy, student_config
from .figures import compress_figure
from .measure import Measured, measure
from .record import COMPRESS_FIGURE, CandidateRow, CompressRecord
from .settings import CompressSettings

COMPRESS_FOLDER = "compress"  # RUN/compress/: the table and figure of the teacher's compression
TOLERANCE = 1e-9


@dataclass
class Compression:
    """What `compress` returns: the record, the compressed run folder (None: no candidate met the
    budget) and RUN/compress/, where the record and its figure are."""

    record: CompressRecord
    run: Path | None
    folder: Path


def _say(settings: CompressSettings) -> Callable[[str], None]:
    if settings.quiet:
        return lambda text: None
    from ..base.progress import stderr_console

    return lambda text: stderr_console().print(text, highlight=False)


def _row(name: str, role: str, side: int, pruned: float, flip_tta: bool, measured: Measured,
         seconds: float = 0.0) -> CandidateRow:
    speed = measured.speed
    return CandidateRow(name=name, role=role, side=side, pruned=pruned, flip_tta=flip_tta,
                        val_accuracy=measured.val_accuracy, test_accuracy=measured.test_accuracy,
                        one_thread_ms=speed.one_thread_ms, one_thread_p95_ms=speed.one_thread_p95_ms,
                        all_threads_ms=speed.all_threads_ms,
                        all_threads_p95_ms=speed.all_threads_p95_ms,
                        images_per_second=speed.images_per_second, file_mb=measured.file_mb,
                        parameters=measured.parameters, flops=measured.flops,
                        train_seconds=seconds)


def _checked_teacher(run: Path) -> tuple[Classifier, ModelCard, Any, DatasetSplits]:
    """The teacher, its card, its recipe and its data, or one line saying what is missing."""
    if export_of(run) is not None:
        raise CnnlabError(f"{run} is an export; compress the run folder it came from")
    model, card = load_model(run, "cpu")
    if not (run / CONFIG).is_file():
        raise CnnlabError(f"{run} has no {CONFIG}: compress retrains with the run's own recipe")
    data = run_dataset(run, card)
    if data.val is None:
        raise CnnlabError(f"{data.name} has no validation split to choose a candidate on: train "
                          f"the teacher with --val-fraction 0.1 (or a val/ folder)")
    return model, card, load_config(run / CONFIG), data


def _output_folder(run: Path, out: str | None) -> Path:
    """OUT, or RUN-compressed beside the teacher (numbered when taken); not created yet."""
    base = Path(out) if out else run.parent / f"{run.name}-compressed"
    chosen, number = base, 1
    while chosen.exists() and (not chosen.is_dir() or any(chosen.iterdir())):
        if out:
            raise CnnlabError(f"--out {out} exists and is not empty: name a new folder")
        number += 1
        chosen = base.with_name(f"{base.name}-{number}")
    return chosen


def _target(settings: CompressSettings, teacher: CandidateRow) -> float | None:
    if settings.speedup is not None:
        return teacher.one_thread_ms / settings.speedup
    return settings.target_ms


def _within(row: CandidateRow, teacher: CandidateRow, max_drop: float,
            target_ms: float | None) -> bool:
    accurate = (row.val_accuracy or 0) >= (teacher.val_accuracy or 0) - max_drop / 100 - TOLERANCE
    return accurate and (target_ms is None or row.one_thread_ms <= target_ms)


def choose(rows: list[CandidateRow], teacher: CandidateRow, max_drop: float,
           target_ms: float | None) -> tuple[CandidateRow | None, str]:
    """The fastest (one image, one thread) of the rows within the accuracy budget on the
    validation split and the latency target; else None, and the closest named."""
    tried = [row for row in rows if row.role != "teacher"]
    eligible = [row for row in tried if _within(row, teacher, max_drop, target_ms)]
    budget = f"within {max_drop:g} points of the teacher's validation accuracy" + (
        f" and {target_ms:.2f} ms" if target_ms is not None else "")
    if eligible:
        best = min(eligible, key=lambda row: (row.one_thread_ms, -(row.val_accuracy or 0)))
        return best, (f"the fastest {budget}: {best.speedup(teacher):.1f}x the teacher's "
                      f"one-image speed on one thread")
    if not tried:
        return None, f"no candidate was trained ({budget} asked)"
    closest = max(tried, key=lambda row: (row.val_accuracy or 0, -row.one_thread_ms))
    fast = [row for row in tried if target_ms is None or row.one_thread_ms <= target_ms]
    if fast:
        closest = max(fast, key=lambda row: (row.val_accuracy or 0, -row.one_thread_ms))
    drop = 100 * ((teacher.val_accuracy or 0) - (closest.val_accuracy or 0))
    return None, (f"no candidate is {budget}; the closest is {closest.name} "
                  f"({closest.one_thread_ms:.2f} ms, {drop:.2f} points below the teacher)")


def compress(run: str | Path, settings: CompressSettings | None = None,
             **options: Any) -> Compression:
    """Compress a trained run: pruned and smaller copies distilled from it, measured here; the
    fastest within the accuracy budget becomes a run folder of its own.

    Args:
        run: the teacher's run folder.
        settings: CompressSettings (default: its defaults); `options` override its fields by name,
            e.g. max_drop=1.0, target_ms=2.0, prune="0.5".
    """
    settings, run = resolve(CompressSettings, settings, options), Path(run).resolve()
    started, say = time.perf_counter(), _say(settings)
    if settings.target_ms is not None and settings.speedup is not None:
        raise CnnlabError("give --target-ms or --speedup, not both")
    teacher, card, recipe, data = _checked_teacher(run)
    found = candidates(card, settings.sizes, settings.prune)
    out = _output_folder(run, settings.out)
    threads = set_threads(None)  # every physical core: the 'all threads' of the table
    say(f"measuring the teacher {run} on this machine (ONNX Runtime, 1 and {threads} threads)")
    teacher_row = _row(f"teacher ({card.input.height}px)", "teacher", card.input.height, 0.0,
                       card.flip_tta, measure(teacher, card.input.shape, data.val, data.test,
                                              threads, settings.timing))
    target_ms = _target(settings, teacher_row)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_work(out)
    with tempfile.TemporaryDirectory(dir=out.parent,
                                     prefix=f".{out.name}-work-{os.getpid()}-") as scratch:
        work = Path(scratch)
        rows = _train_all(run, teacher, card, recipe, found, work, settings, threads, say)
        chosen, reason = choose(rows, teacher_row, settings.max_drop, target_ms)
        folder = None
        if chosen is not None:
            folder, chosen, rows = _ship(run, chosen, rows, teacher_row, work, out, settings,
                                         target_ms, threads, say)
            reason = choose(rows, teacher_row, settings.max_drop, target_ms)[1]
        reason += _coarse_choice(len(data.val), settings.max_drop)
        record = CompressRecord(teacher=str(run), threads=threads, target_ms=target_ms,
                                max_drop=settings.max_drop, rows=(teacher_row, *rows),
                                chosen=chosen.name if chosen else None, reason=reason,
                                run=str(folder) if folder else None,
                                seconds=round(time.perf_counter() - started, 1))
        results = _write_record(run / COMPRESS_FOLDER, record)
        if folder is not None:
            _write_record(folder, record)
            if settings.keep_candidates:
                shutil.move(str(work / "candidates"), str(folder / "candidates"))
    return Compression(record, folder, results)


def _coarse_choice(val_images: int, max_drop: float) -> str:
    """What a small validation split does to the choice: one image is a large step."""
    step = 100 / val_images
    if step < max_drop / 4:
        return ""
    errors = int(max_drop / step + TOLERANCE)
    return (f". The validation split has {val_images} images: one image is {step:.2f} points, "
            f"so the budget allows {errors} error{'s' if errors != 1 else ''} more than the "
            f"teacher's and ties are common; the test split says what the choice cost (a larger "
            f"--val-fraction for the teacher makes the choice finer)")


def _remove_stale_work(out: Path) -> None:
    """Work folders a killed compress left beside the output (their process is gone)."""
    for folder in out.parent.glob(f".{out.name}-work-*"):
        pid = folder.name.removeprefix(f".{out.name}-work-").split("-")[0]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)



def _write_record(folder: Path, record: CompressRecord) -> Path:
    """compress.json and compress.png into `folder` (RUN/compress/ is replaced whole)."""
    if folder.name == COMPRESS_FOLDER:
        with replacing(folder, ("compress.json", COMPRESS_FIGURE, ".*.tmp")) as work:
            record.write(work)
            compress_figure(record, work / COMPRESS_FIGURE)
        return folder
    record.write(folder)
    compress_figure(record, folder / COMPRESS_FIGURE)
    return folder


def _train_all(run: Path, teacher: Classifier, card: ModelCard, recipe: Any,
               found: list[Candidate], work: Path, settings: CompressSettings, threads: int,
               say: Callable[[str], None]) -> list[CandidateRow]:
    """Train and measure every candidate (with and without flip TTA where the teacher uses it)."""
    inits = {share: pruned_copy(teacher, card, share, work / "inits" / f"pruned{round(share * 100)}")
             for share in {c.pruned for c in found if c.pruned}}
    rows: list[CandidateRow] = []
    for number, candidate in enumerate(found, 1):
        folder = work / "candidates" / candidate.name
        config = student_config(recipe, run, card, candidate.side, inits.get(candidate.pruned, run),
                                folder, settings.epochs, settings.temperature, settings.weight,
                                settings.seed)
        say(f"candidate {number}/{len(found)}: {candidate.name}, {config.epochs} epochs distilled "
            f"from the teacher")
        trained = fit(config, quiet=True, on_epoch_end=_epoch_line(candidate, config.epochs, say))
        rows.extend(_measure_candidate(candidate, folder, card.flip_tta and settings.tta,
                                       trained.seconds, threads, settings.timing))
        say(f"  {rows[-1].name}: validation {rows[-1].val_accuracy:.2%}, "
            f"{rows[-1].one_thread_ms:.2f} ms one image on one thread")
    return rows


def _epoch_line(candidate: Candidate, epochs: int, say: Callable[[str], None]):
    def said(_model: Any, row: Any) -> None:
        val = f", validation {row.val_acc:.2%}" if row.has_validation else ""
        say(f"  {candidate.name}: epoch {row.epoch}/{epochs}{val}")
    return said


def _measure_candidate(candidate: Candidate, folder: Path, both_ways: bool, seconds: float,
                       threads: int, timing: float) -> list[CandidateRow]:
    model, card = load_model(folder, "cpu")
    data = run_dataset(folder, card)
    rows = []
    for flip in ((True, False) if both_ways else (card.flip_tta,)):
        model.flip_tta = flip
        name = candidate.name + ("" if flip or not card.flip_tta else "-no-tta")
        rows.append(_row(name, "candidate", candidate.side, candidate.pruned, flip,
                         measure(model, card.input.shape, data.val, data.test, threads, timing),
                         seconds))
    return rows


def _ship(run: Path, chosen: CandidateRow, rows: list[CandidateRow], teacher: CandidateRow,
          work: Path, out: Path, settings: CompressSettings, target_ms: float | None,
          threads: int, say: Callable[[str], None]) -> tuple[Path, CandidateRow, list[CandidateRow]]:
    """The chosen candidate calibrated and exported in the work folder (int8 measured as one more
    row), then moved into place whole."""
    folder = work / "candidates" / chosen.name.removesuffix("-no-tta")
    _set_flip(folder, chosen)
    say(f"chosen: {chosen.name}; calibrating and exporting it")
    calibrate_run(folder, quiet=True)
    export = export_run(folder, int8=settings.int8, quiet=True, check=False)
    if settings.int8 and "int8" in export.manifest.files:
        int8 = _int8_row(chosen, folder, export.folder / export.manifest.files["int8"], threads,
                         settings.timing)
        rows = [*rows, int8]
        if _within(int8, teacher, settings.max_drop, target_ms) and \
                int8.one_thread_ms < chosen.one_thread_ms:
            chosen = int8
    # config.yaml's --init named the pruned copy in the work folder, which goes: the compressed
    # run itself has its shapes, so --resume and --config keep working
    recipe = load_config(folder / CONFIG)
    recipe.init, recipe.out = str(out), str(out)
    atomic_write_text(folder / CONFIG, recipe.to_yaml())
    if out.exists():
        out.rmdir()  # an empty folder named by --out
    shutil.move(str(folder), str(out))
    return out, chosen, rows


def _set_flip(folder: Path, chosen: CandidateRow) -> None:
    """The card's flip TTA as chosen; where the choice dropped it, results.json and the card give
    the test accuracy measured without it (training measured it with)."""
    trained = read_card(folder)
    write_card(folder, trained.replace(flip_tta=chosen.flip_tta))
    if chosen.flip_tta != trained.flip_tta and chosen.test_accuracy is not None:
        results = TrainingResults.read(folder / RESULTS)
        write_results(folder, dataclasses.replace(results,
                                                  test_accuracy=round(chosen.test_accuracy, 6)))


def _int8_row(chosen: CandidateRow, folder: Path, graph: Path, threads: int,
              timing: float) -> CandidateRow:
    model, card = load_model(folder, "cpu")
    data = run_dataset(folder, card)
    measured = measure(model, card.input.shape, data.val, data.test, threads, timing, graph=graph)
    return _row(f"{chosen.name}-int8", "int8", chosen.side, chosen.pruned, chosen.flip_tta,
                measured, chosen.train_seconds)

