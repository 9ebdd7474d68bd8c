"""`cnnlab compress` on the terminal: every candidate beside the teacher, and the choice."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..base.show import print_table, say

if TYPE_CHECKING:
    from .record import CandidateRow, CompressRecord
    from .run import Compression
    from .settings import CompressSettings


def _accuracy(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _ms(value: float) -> str:
    return f"{value:.3g}"


def _cells(row: CandidateRow, teacher: CandidateRow, chosen: str | None) -> list[str]:
    from ..models.summary import human

    mark = " (chosen)" if row.name == chosen else ""
    return [row.name + mark, _accuracy(row.val_accuracy), _accuracy(row.test_accuracy),
            f"{_ms(row.one_thread_ms)} / {_ms(row.one_thread_p95_ms)}",
            _ms(row.all_threads_ms), f"{row.images_per_second:,.0f}",
            f"{row.speedup(teacher):.1f}x", human(row.parameters), human(row.flops),
            f"{row.file_mb:.2f}"]


def compression_table(record: CompressRecord) -> tuple[list[str], list[list[str]]]:
    """The columns and rows of the table, the teacher first (the report shows it too)."""
    teacher = record.teacher_row
    columns = ["model", "val acc", "test acc", "1 image, 1 thread ms (median / p95)",
               f"1 image, {record.threads} threads ms", "images/s (batches)", "speed-up",
               "params", "FLOPs", "file MB"]
    return columns, [_cells(row, teacher, record.chosen) for row in record.rows]


def show_compression(result: Compression, settings: CompressSettings) -> int:
    """The table and the choice; exit code 1 when no candidate met the budget."""
    record = result.record
    if not settings.quiet:
        columns, rows = compression_table(record)
        print_table(f"compress {record.teacher} (ONNX Runtime on this machine)", columns, rows)
        say(record.reason)
        if result.run is not None:
            say(f"compressed run: {result.run} (predict, evaluate, serve and export take it)")
        say(f"table and figure: {result.folder}/compress.json, compress.png")
    return 0 if result.run is not None else 1
