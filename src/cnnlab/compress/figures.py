"""The compression figure: accuracy against one-image latency for the teacher and every candidate,
on the validation split (where the choice is made) and the test split, the Pareto front drawn."""

from __future__ import annotations

from pathlib import Path

from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from ..base.figures import plt, save_figure
from .record import CandidateRow, CompressRecord


def pareto_front(rows: list[CandidateRow], accuracy: str) -> list[CandidateRow]:
    """The rows no other row beats on both latency and `accuracy`, fastest first."""
    front, best = [], -1.0
    for row in sorted(rows, key=lambda r: (r.one_thread_ms, -(getattr(r, accuracy) or 0))):
        value = getattr(row, accuracy) or 0
        if value > best:
            front.append(row)
            best = value
    return front


def _panel(axis, record: CompressRecord, accuracy: str, title: str) -> None:
    rows = [row for row in record.rows if getattr(row, accuracy) is not None]
    teacher = record.teacher_row
    for row in rows:
        style = {"teacher": ("*", 160, "black"), "int8": ("s", 50, "tab:purple")}.get(
            row.role, ("o", 40, "tab:blue"))
        axis.scatter(row.one_thread_ms, 100 * getattr(row, accuracy), marker=style[0], s=style[1],
                     color=style[2], zorder=3)
        axis.annotate(row.name, (row.one_thread_ms, 100 * getattr(row, accuracy)), fontsize=7,
                      xytext=(4, 3), textcoords="offset points")
    front = pareto_front(rows, accuracy)
    axis.plot([r.one_thread_ms for r in front], [100 * getattr(r, accuracy) for r in front],
              color="tab:orange", lw=1.2, label="Pareto front", zorder=2)
    chosen = record.row(record.chosen)
    if chosen is not None and getattr(chosen, accuracy) is not None:
        axis.scatter(chosen.one_thread_ms, 100 * getattr(chosen, accuracy), s=260,
                     facecolors="none", edgecolors="tab:red", lw=2, label="chosen", zorder=4)
    if accuracy == "val_accuracy" and teacher.val_accuracy is not None:
        axis.axhline(100 * teacher.val_accuracy - record.max_drop, color="gray", ls="--", lw=1,
                     label=f"budget: -{record.max_drop:g} points")
    if record.target_ms is not None:
        axis.axvline(record.target_ms, color="gray", ls=":", lw=1, label="latency target")
    axis.set_xscale("log")
    axis.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.xaxis.set_major_formatter(FormatStrFormatter("%g"))  # 2, 5 ms rather than 2x10^0
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.set_xlabel("one image, one thread (ms, ONNX Runtime; log scale)")
    axis.set_ylabel("accuracy (%)")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="lower right")


def compress_figure(record: CompressRecord, path: Path) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    _panel(axes[0], record, "val_accuracy", "validation split (the choice)")
    _panel(axes[1], record, "test_accuracy", "test split (held out)")
    figure.suptitle(f"{Path(record.teacher).name}: the teacher (star) and its compressed "
                    f"candidates", fontsize=10)
    figure.tight_layout()
    save_figure(figure, path)
