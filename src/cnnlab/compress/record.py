"""RUN/compress/compress.json as a type: every candidate measured, the budget and the choice (one
writer, `write`; one reader, `read`, base.typed's). The compressed run folder holds a copy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..base.fileio import atomic_write_json
from ..base.typed import json_field, read_typed_in, to_json_dict

COMPRESS_FILE, COMPRESS_FIGURE = "compress.json", "compress.png"
SHARE, NON_NEGATIVE = (0, 1), (0, None)


@dataclass(frozen=True)
class CandidateRow:
    """One model as measured on this machine: the teacher, a candidate, or the chosen one in int8.
    Latencies are of one image at a time on ONNX Runtime; images/s of batches on every thread."""

    name: str
    role: str  # "teacher", "candidate", "int8"
    side: int = json_field(within=NON_NEGATIVE)  # input side in pixels
    pruned: float = json_field(within=SHARE)  # share of channels removed
    flip_tta: bool
    val_accuracy: float | None = json_field(within=SHARE)
    test_accuracy: float | None = json_field(within=SHARE)
    one_thread_ms: float = json_field(within=NON_NEGATIVE)  # median
    one_thread_p95_ms: float = json_field(within=NON_NEGATIVE)
    all_threads_ms: float = json_field(within=NON_NEGATIVE)
    all_threads_p95_ms: float = json_field(within=NON_NEGATIVE)
    images_per_second: float = json_field(within=NON_NEGATIVE)
    file_mb: float = json_field(within=NON_NEGATIVE)
    parameters: int = json_field(within=NON_NEGATIVE)
    flops: float = json_field(within=NON_NEGATIVE)  # per image, 2 per multiply-add
    train_seconds: float = json_field(0.0, within=NON_NEGATIVE)

    def speedup(self, teacher: CandidateRow) -> float:
        """How many times the teacher's one-image, one-thread speed."""
        return teacher.one_thread_ms / self.one_thread_ms if self.one_thread_ms else 0.0


@dataclass(frozen=True)
class CompressRecord:
    """What `cnnlab compress` measured and chose."""

    JSON_FORMAT = "cnnlab-compress/1"

    teacher: str  # the run folder compressed
    threads: int = json_field(within=NON_NEGATIVE)  # "all threads" in the rows
    target_ms: float | None = json_field(within=NON_NEGATIVE)  # the latency asked, if any
    max_drop: float = json_field(within=(0, 100))  # points of validation accuracy allowed
    rows: tuple[CandidateRow, ...]
    chosen: str | None  # the name of the chosen row; None: no candidate met the budget
    reason: str  # why this one, or why none
    run: str | None = None  # the compressed run folder
    seconds: float = json_field(0.0, within=(0, 1e10))
    folder: Path | None = json_field(None, stored=False)  # where it was read from or written to

    def write(self, folder: Path) -> Path:
        return atomic_write_json(folder / COMPRESS_FILE, to_json_dict(self))

    @classmethod
    def read(cls, folder: str | Path) -> CompressRecord:
        return read_typed_in(cls, folder, COMPRESS_FILE)

    @property
    def teacher_row(self) -> CandidateRow:
        return next(row for row in self.rows if row.role == "teacher")

    def row(self, name: str | None) -> CandidateRow | None:
        return next((row for row in self.rows if row.name == name), None)


def read_compression(folder: str | Path) -> CompressRecord:
    """A run's compress.json (RUN/compress/, or a compressed run folder's own copy)."""
    folder = Path(folder)
    inner = folder / "compress"
    return CompressRecord.read(inner if (inner / COMPRESS_FILE).is_file() else folder)
