"""The report's sections, each read from what the run folder holds. A section whose inputs are not
there yet says which command makes them."""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..base.yamlload import load_yaml
from ..run.contract import ModelCard
from ..run.folder import RESULTS, read_metrics
from ..run.results import AttackMetrics, EvaluationMetrics, OpenSetResult, TrainingResults

# Figures wider than this are scaled down before they are embedded, so the report stays a few MB.
MAX_FIGURE_WIDTH = 1400
EXPLAINED_SHOWN = 4  # images per attribution method


@dataclass
class Figure:
    caption: str
    uri: str  # data:image/png;base64,...


@dataclass
class Table:
    caption: str
    columns: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    key: str
    title: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing: str | None = None  # the command that makes what this section shows
    headline: list[tuple[str, str]] = field(default_factory=list)  # its figures on the first screen
    one_a_row: bool = False  # figures of many small panels, which are read only at full width


def figure(path: Path, caption: str) -> Figure:
    """A PNG as a data URI (scaled down to MAX_FIGURE_WIDTH): the report needs no other file."""
    with Image.open(path) as image:
        image.load()
        if image.width > MAX_FIGURE_WIDTH:
            height = round(image.height * MAX_FIGURE_WIDTH / image.width)
            image = image.resize((MAX_FIGURE_WIDTH, height), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
    return Figure(caption, "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode())


def evaluation_of(run: Path) -> EvaluationMetrics | None:
    """The run's evaluation of its test split, where `cnnlab evaluate` has written one."""
    path = run / "evaluate" / "metrics.json"
    return EvaluationMetrics.read(path) if path.is_file() else None


def attack_of(run: Path) -> AttackMetrics | None:
    """The run's default attack (PGD on its test split), where `cnnlab attack` has written one."""
    path = run / "attack" / "metrics.json"
    return AttackMetrics.read(path) if path.is_file() else None


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _figures(folder: Path, names: list[tuple[str, str]]) -> list[Figure]:
    return [figure(folder / name, caption) for name, caption in names if (folder / name).is_file()]


def _started_from(card: ModelCard) -> str:
    if card.teacher is not None:
        pruned = f", {card.pruned:.0%} of its channels pruned," if card.pruned else ""
        return f"a copy of its teacher{pruned} distilled from {card.teacher}"
    return "ImageNet" if card.pretrained else "no (from scratch)"


def trained(run: Path, card: ModelCard) -> Section:
    from ..models.summary import summary_rows
    from ..run.folder import network_summary

    section = Section("trained", "What was trained")
    section.facts = [("data", card.dataset or "-"), ("network", card.name),
                     ("input", "x".join(map(str, card.input.shape))),
                     ("classes", f"{card.num_classes}: {', '.join(card.class_names[:20])}"
                                 f"{' ...' if card.num_classes > 20 else ''}"),
                     ("pretrained", _started_from(card))]
    summary = network_summary(run, card)
    section.tables.append(Table("layers", ["#", "layer", "output", "params", "FLOPs",
                                           "receptive field", "params if dense"],
                                summary_rows(summary)[:60]))
    config = run / "config.yaml"
    if config.is_file():
        section.tables.append(Table("settings (config.yaml)", ["setting", "value"],
                                    _flat_settings(load_yaml(config.read_text(encoding="utf-8"),
                                                             str(config)) or {})))
    return section


def _flat_settings(values: dict, prefix: str = "") -> list[list[str]]:
    rows = []
    for key, value in values.items():
        if isinstance(value, dict):
            rows.extend(_flat_settings(value, f"{prefix}{key}."))
        else:
            rows.append([prefix + key, str(value)])
    return rows


def training(run: Path, card: ModelCard) -> Section:
    section = Section("training", "How training went")
    # a probe refitted on train + val: its validation figure is the one it was chosen by, before
    # the refit, not a held-out score of the final model
    val = "validation accuracy" + (" (before the refit on it)" if "val" in card.fitted_on else "")
    if (run / RESULTS).is_file():
        results = TrainingResults.read(run / RESULTS)
        section.facts = [("status", results.status), ("epochs", str(results.epochs)),
                         ("best epoch", str(results.best_epoch)),
                         (val, _percent(results.best_val_accuracy)),
                         ("test accuracy", _percent(results.test_accuracy)),
                         ("time", f"{results.seconds:.0f} s")]
    section.figures = _figures(run, [("curves.png", "loss, accuracy and learning rate per epoch")])
    rows = [row.to_dict() for row in read_metrics(run)]
    if rows:
        columns = list(rows[-1])
        section.tables.append(Table("per epoch (metrics.csv)", columns,
                                    [[_metric(c, row.get(c)) for c in columns] for row in rows]))
    return section


def _metric(column: str, value: float | None) -> str:
    """A metrics.csv value as the terminal shows it: accuracy in %, the rate in e-notation."""
    if value is None or math.isnan(value):  # no validation split, or no rate for a probe
        return "-"
    if column.endswith("acc"):
        return f"{value:.2%}"
    return {"epoch": f"{value:.0f}", "lr": f"{value:.2e}", "seconds": f"{value:.1f}"}.get(
        column, f"{value:.4f}")


def unknowns(run: Path, card: ModelCard) -> Section:
    """Calibration and the unknown-image detector, and how they fared where evaluate --unknown
    measured them."""
    section = Section("unknown", "What it does not know")
    c = card.calibration
    if c is not None and c.declined is not None:
        section.facts.append(("temperature", f"none: {c.declined}"))
    elif c is not None:
        section.facts.append(("temperature", f"{c.temperature:.3g} (validation ECE {c.ece_before:.4f}"
                                             f" before, {c.ece_after:.4f} after)"))
    if card.unknown is None:
        section.missing = f"cnnlab calibrate {run}"
        return section
    u = card.unknown
    section.facts.append(("unknown images", f"{u.score} score below {u.threshold:.4g} (keeps "
                                            f"{u.keep:.0%} of the validation images)"))
    measured = run / "evaluate" / "unknown.json"
    if measured.is_file():
        result = OpenSetResult.read(measured)
        section.tables.append(Table(
            f"known (test split, {result.known:,}) against unknown images ({result.unknown:,})",
            ["score", "AUROC", "FPR at 95% TPR"],
            [[row.score, f"{row.auroc:.4f}", _percent(row.fpr_at_95_tpr)] for row in result.scores]))
        section.figures = _figures(run / "evaluate", [("unknown_scores.png", "scores of the known "
                                                       "and the unknown images")])
    else:  # DATA is the user's to choose, so --full cannot measure it: a note, not a gap
        section.notes.append(f"how well it tells its classes from others: cnnlab evaluate {run} "
                             f"--unknown DATA (images of none of its classes)")
    return section


def quality(run: Path) -> Section:
    section = Section("quality", "How good it is")
    metrics = evaluation_of(run)
    if metrics is None:
        section.missing = f"cnnlab evaluate {run}"
        return section
    section.facts = [("split", f"{metrics.data} {metrics.split}, {metrics.images:,} images"),
                     ("accuracy", _percent(metrics.accuracy)),
                     ("top-5 accuracy", _percent(metrics.top5_accuracy)),
                     ("macro F1", f"{metrics.macro_avg.f1:.4f}"),
                     ("macro AUROC", _number(metrics.macro_auroc)),
                     ("macro average precision", _number(metrics.macro_average_precision)),
                     ("calibration error (ECE)", f"{metrics.ece:.4f}")]
    section.headline = [("macro F1", f"{metrics.macro_avg.f1:.4f}")]
    if metrics.per_class:
        auc = {row.name: row for row in metrics.per_class_auc}
        columns = [*metrics.per_class[0].to_dict(), "AUROC", "AP"]
        section.tables.append(Table("per class (AUROC and AP: the class against the rest)", columns,
                                    [[*(_cell(value) for value in row.to_dict().values()),
                                      _number(getattr(auc.get(row.name), "auroc", None)),
                                      _number(getattr(auc.get(row.name), "average_precision", None))]
                                     for row in metrics.per_class]))
    if metrics.thresholds:
        section.tables.append(_thresholds_table(metrics))
    if metrics.translation:
        section.tables.append(Table("translation test: every image shifted by N pixels",
                                    ["shift (px)", "accuracy"],
                                    [[str(r.shift), _percent(r.accuracy)]
                                     for r in metrics.translation]))
    top = _top_losses_table(run / "evaluate")
    if top is not None:
        section.tables.append(top)
    section.figures = _figures(run / "evaluate", [
        ("confusion_matrix.png", "confusion matrix"), ("reliability.png", "calibration"),
        ("pr_curves.png", "precision-recall per class (dots: the thresholds of the target "
                          "precisions)"),
        ("roc_curves.png", "ROC per class"),
        ("top_losses.png", "top losses: the images of highest loss, by file"),
        ("mistakes.png", "the most confident mistakes"), ("shift.png", "translation test")])
    return section


def _cell(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _thresholds_table(metrics: EvaluationMetrics) -> Table:
    targets = [row.target for row in metrics.thresholds[0].targets]

    def cell(row) -> str:
        if row is None or row.threshold is None:
            return "out of reach"
        return f"{row.threshold:.3f} (recall {row.recall:.0%})"

    return Table(f"thresholds on {metrics.split}: the class's probability from which its "
                 f"precision reaches the target, and the recall kept (predict --min-precision)",
                 ["class", *(f"precision {t:g}" for t in targets)],
                 [[row.name, *(cell(row.at(t)) for t in targets)] for row in metrics.thresholds])


def _top_losses_table(folder: Path) -> Table | None:
    """The images of highest loss, read back from predictions.csv (as many as the figure)."""
    from ..evaluate import read_top_losses

    found = read_top_losses(folder)
    return Table("top losses (from predictions.csv)", *found) if found else None


def _own_attributions(folder: Path, method: str) -> list[Path]:
    """The figures `cnnlab report --full` made of its test images (explain names images given
    as arrays image0, image1 ...), not those of images a person explained by file."""
    return [path for path in (folder / f"image{i}-{method}.png" for i in range(EXPLAINED_SHOWN))
            if path.is_file()]


def _embedding_figure(folder: Path) -> Figure | None:
    """The report's own map (the test split, t-SNE), else another split or projection, named."""
    found = sorted(folder.glob("embedding-*.png"))
    own = folder / "embedding-test-tsne.png"
    path = own if own.is_file() else (found[0] if found else None)
    if path is None:
        return None
    split, _, projection = path.stem.removeprefix("embedding-").rpartition("-")
    shown = "t-SNE" if projection == "tsne" else projection.upper()
    return figure(path, f"embedding of the penultimate layer ({split} split, {shown})")


def why(run: Path) -> Section:
    section = Section("why", "Why it decides", one_a_row=True)
    folder = run / "explain"
    for method, caption in (("gradcam", "Grad-CAM"), ("saliency", "saliency")):
        section.figures += [figure(path, f"{caption}: test image {number} (one per class)")
                            for number, path in enumerate(_own_attributions(folder, method), 1)]
    if (folder / "filters.png").is_file():  # the model's own, whoever drew them
        section.figures.append(figure(folder / "filters.png", "first-layer filters"))
    embedding = _embedding_figure(folder)
    section.figures += [embedding] if embedding else []
    if not section.figures:
        section.missing = f"cnnlab explain {run} --method filters,embedding"
    elif not _own_attributions(folder, "gradcam"):
        section.notes.append(f"Grad-CAM and saliency maps of test images: cnnlab report {run} "
                             f"--full makes them (maps of images explained by hand stay in "
                             f"{folder}/, out of the report)")
    return section


def hierarchy(run: Path) -> Section:
    """What each depth learned, from `cnnlab explain RUN --method hierarchy`'s record."""
    from ..explain import HierarchyRecord

    section = Section("hierarchy", "What each depth learned", one_a_row=True)
    folder = run / "explain" / "hierarchy"
    if not (folder / "hierarchy.json").is_file():
        section.missing = f"cnnlab explain {run} --method hierarchy"
        return section
    record = HierarchyRecord.read(folder)
    networks = list(dict.fromkeys(point.network for point in record.probe))
    rows: dict[str, dict[str, str]] = {}
    for point in record.probe:
        rows.setdefault(point.layer, {})[point.network] = _percent(point.val_accuracy)
    section.tables.append(Table("linear probe on each depth's pooled features (validation "
                                "accuracy)", ["layer", *networks],
                                [[layer, *(row.get(n, "-") for n in networks)]
                                 for layer, row in rows.items()]))
    own = record.probe_of(networks[0]) if networks else []
    if own:
        section.facts.append(("probe accuracy, first to last depth",
                              f"{_percent(own[0].val_accuracy)} to {_percent(own[-1].val_accuracy)}"))
    section.facts.append(("receptive fields, first to last depth shown",
                          ", ".join(f"{depth.receptive_field} px" for depth in record.depths)))
    shown = [name for name in ("depth-probe.png", "pictures.png") if name in record.figures]
    patches = [name for name in record.figures if name.startswith("patches-")]
    captions = {"depth-probe.png": "what each depth knows of the classes (linear probe)",
                "pictures.png": "the input each channel likes best (by optimisation)"}
    section.figures += [figure(folder / name, captions[name]) for name in shown
                        if (folder / name).is_file()]
    section.figures += [figure(folder / name, f"training patches that excite depth {number}")
                        for number, name in enumerate(patches, 1) if (folder / name).is_file()]
    return section


def robustness(run: Path) -> Section:
    section = Section("robustness", "How robust it is")
    for folder in sorted(run.glob("attack*")):
        if not (folder / "metrics.json").is_file():
            continue
        metrics = AttackMetrics.read(folder / "metrics.json")
        name = metrics.method.upper() + (f" ({metrics.norm}, {metrics.steps} steps)"
                                         if metrics.method == "pgd" else "")
        section.tables.append(Table(
            f"{name}, {metrics.data} {metrics.split}, {metrics.images:,} images",
            ["epsilon", "robust accuracy"],
            [[f"{row.eps:g}", _percent(row.robust_accuracy)] for row in metrics.results]))
        section.figures += _figures(folder, [("robust_accuracy.png", f"{name}: accuracy against "
                                                                     f"epsilon"),
                                             ("examples.png", f"{name}: adversarial examples")])
    if not section.tables:
        section.missing = f"cnnlab attack {run}"
    default = attack_of(run)
    if default is not None:  # its third epsilon, where the default attack has one
        row = default.results[min(2, len(default.results) - 1)]
        section.headline = [(f"{default.method.upper()} robust at eps {row.eps:g}",
                             f"{row.robust_accuracy:.2%}")]
    return section


def baselines(run: Path) -> Section:
    from ..baselines import TABLE_COLUMNS, Baselines, table_row

    section = Section("baselines", "Against the classic methods")
    results = Baselines.found_in(run / "baselines")
    if results is None:
        section.missing = f"cnnlab baselines --run {run}"
        return section
    section.tables.append(Table("the same test split for every method", TABLE_COLUMNS,
                                [table_row(r) for r in results]))
    section.notes = [f"{r.method}: {r.note}" for r in results if r.note]
    best = results.best_classic
    if best is not None:
        section.headline = [(f"best classic: {best.method}", f"{best.accuracy:.2%}")]
    return section
