"""`cnnlab evaluate` on the terminal: the metrics, per class, thresholds, translation, unknowns."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..base.show import console, fraction, print_table
from ..run.results import TARGET_PRECISIONS
from .top_losses import TABLE_COLUMNS, table_rows

if TYPE_CHECKING:
    from ..run.results import EvaluationMetrics
    from .run import Evaluation
    from .settings import EvaluateSettings


def show_evaluation(result: Evaluation, settings: EvaluateSettings) -> int:
    if settings.quiet:
        return 0
    m = result.metrics
    _print_metrics(m)
    _print_per_class(m)
    if m.translation:
        print_table("translation invariance: every image shifted by N pixels",
                    ["shift (px)", "accuracy"],
                    [[str(r.shift), f"{r.accuracy:.2%}"] for r in m.translation])
    if result.open_set is not None:
        _print_open_set(result.open_set)
    if settings.top_losses is not None and result.top_losses:  # asked for by name: the table too
        print_table(f"top losses: the {len(result.top_losses)} images of highest loss",
                    TABLE_COLUMNS, table_rows(result.top_losses))
    console.print(f"written to {result.folder}/: metrics.json, per_class.csv, predictions.csv, "
                  f"thresholds.csv, confusion_matrix.csv/.png, reliability.png, mistakes.png, "
                  f"pr_curves.png, roc_curves.png"
                  f"{', top_losses.png' if result.top_losses else ''}"
                  f"{', shift.png' if m.translation else ''}"
                  f"{', unknown.json, unknown_scores.png' if result.open_set else ''}")
    return 0


def _print_metrics(m: EvaluationMetrics) -> None:
    rows = [["images", f"{m.images:,}"], ["loss", f"{m.loss:.4f}"],
            ["accuracy (top-1)", f"{m.accuracy:.2%}"]]
    if m.top5_accuracy is not None:
        rows.append(["top-5 accuracy", f"{m.top5_accuracy:.2%}"])
    rows += [["macro F1", f"{m.macro_avg.f1:.4f}"], ["weighted F1", f"{m.weighted_avg.f1:.4f}"],
             ["macro AUROC", fraction(m.macro_auroc)],
             ["macro average precision", fraction(m.macro_average_precision)],
             ["calibration error (ECE, 15 bins)", f"{m.ece:.4f}"]]
    held = "" if m.held_out else " (NOT held out: the model was fitted on it)"
    print_table(f"{m.data} {m.split} split{held}", ["metric", "value"], rows)


def _print_open_set(open_set) -> None:
    """evaluate --unknown: each score's AUROC and FPR at 95% TPR, and the run's own detector."""
    print_table(f"unknown images: {open_set.known:,} known (this split) against "
                f"{open_set.unknown:,} unknown", ["score", "AUROC", "FPR at 95% TPR"],
                [[s.score + (" (the run's detector)" if s.score == open_set.detector else ""),
                  f"{s.auroc:.4f}", f"{s.fpr_at_95_tpr:.2%}"] for s in open_set.scores])
    if open_set.detector is not None:
        console.print(f"with the run's threshold: {open_set.unknown_refused:.1%} of the unknown "
                      f"images called unknown, {open_set.known_kept:.1%} of the known kept")


def _print_per_class(m: EvaluationMetrics) -> None:
    """Precision, recall, F1 and the areas under the curves; then, per class, the probability
    threshold that reaches each target precision and the recall it keeps."""
    auc = {row.name: row for row in m.per_class_auc}
    rows = []
    for r in m.per_class:
        areas = auc.get(r.name)
        rows.append([r.name, f"{r.precision:.3f}", f"{r.recall:.3f}", f"{r.f1:.3f}", str(r.support),
                     fraction(areas.auroc if areas else None, 3),
                     fraction(areas.average_precision if areas else None, 3)])
    print_table("per class", ["class", "precision", "recall", "F1", "support", "AUROC", "AP"], rows)
    if m.thresholds:
        print_table("thresholds: a class's probability from which its precision reaches the "
                    "target, and the recall kept",
                    ["class", *(f"precision {t:g}" for t in TARGET_PRECISIONS)],
                    [[row.name, *(_threshold_cell(row.at(t)) for t in TARGET_PRECISIONS)]
                     for row in m.thresholds])


def _threshold_cell(row) -> str:
    if row is None or row.threshold is None:
        return "out of reach"
    return f"{row.threshold:.3f} (recall {row.recall:.0%})"
