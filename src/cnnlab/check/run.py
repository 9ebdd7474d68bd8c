"""`cnnlab check DATA`: what is wrong with a dataset, before it trains a model.

One pass decodes every image (naming those that cannot be read) and embeds it (with --run, twice:
in the run's features and in the data's own embedding); k-fold cross-validation gives each training
image class probabilities from a model that never saw it, and cleanlab's confident learning finds
the likely label errors among them; one pass over all pairs finds copies within and across the
splits and each image's nearest neighbours; the rest are oddities of size, mode and content.
Everything found is one Finding, one row of check.csv.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..base.devices import resolve_device, set_threads
from ..base.errors import CnnlabError
from ..base.progress import tracked
from ..base.settings import resolve
from ..config import DataConfig
from ..data.registry import photo_shape
from . import duplicates, embed, labels, oddities
from .findings import KINDS, CheckResult, Finding
from .report import CHECK_CSV, CHECK_JSON, CHECK_PAGE, LABEL_ISSUES_FIGURE, WORST, CheckReport, default_folder
from .scan import Items, Scan, decoded_batches, empty_scan, load_items, record
from .settings import CheckSettings


@dataclass
class Embedders:
    """What gives the label model and the outliers their vectors, and what finds copies."""

    features: embed.Embedder
    copies: embed.Embedder

    def distinct(self) -> list[embed.Embedder]:
        """Each embedder once, features first."""
        return [self.features] if self.copies is self.features else [self.features, self.copies]


def _embedders(data: str, settings: CheckSettings, device: torch.device, items: Items) -> Embedders:
    """The data's own embedding for everything; with --run, the run's features for the label model
    and the outliers, while copies are still found in the data's own embedding: a trained network
    pulls each class together, so its features would make many pairs of a class look like copies.
    For photos that runs EfficientNet-Lite0 over every image besides the run's network (the
    embedding time of a check without --run, on top); small images' pixels cost next to nothing."""
    copies = _data_embedder(data, device, items)
    features = embed.run_embedder(settings.run, device) if settings.run else copies
    return Embedders(features, copies)


def _data_embedder(data: str, device: torch.device, items: Items) -> embed.Embedder:
    shape = photo_shape(DataConfig(name=data))
    if embed.is_photo(shape):
        return embed.pretrained_embedder(device)
    if items.tensors is not None:
        return embed.pixel_embedder(tuple(items.tensors.shape[1:]))
    from .scan import dataset_of

    return embed.pixel_embedder(dataset_of(data).input_shape)


@dataclass
class Embedded:
    """One pass over the images: their facts and vectors, rows following Items."""

    scan: Scan
    features: torch.Tensor  # (N, F) for the label model and the outliers
    copies: torch.Tensor  # (N, F') for copies: the same tensor where one embedder does both
    pixels: torch.Tensor | None  # uint8 (N, C, H, W): the per-fold CNN's input, files only


def _scan_and_embed(items: Items, embedders: Embedders, settings: CheckSettings,
                    device: torch.device) -> Embedded:
    """Decode every image once: its facts, its vector by each embedder, and (pixels) the CNN's
    input."""
    scan = empty_scan(len(items))
    used = embedders.distinct()
    vectors: list[torch.Tensor | None] = [None] * len(used)
    # a built-in set's images are in memory already
    pixels = torch.zeros((len(items), *used[0].shape), dtype=torch.uint8) \
        if used[0].kind == "pixels" and items.tensors is None else None
    inputs = [(embedder.shape, embedder.interpolation) for embedder in used]
    with tracked("reading and embedding images", len(items), quiet=settings.quiet) as advance:
        for batch in decoded_batches(items, inputs, settings.batch_size, settings.workers):
            for index, facts, _, error in batch:
                record(scan, index, facts, error)
            good = [(index, images) for index, facts, images, _ in batch if facts is not None]
            if good:
                rows = torch.tensor([index for index, _ in good])
                stacked = [torch.stack([images[k] for _, images in good]) for k in range(len(used))]
                for k, embedder in enumerate(used):
                    vectors[k] = _stored(vectors[k], rows, embedder(stacked[k], device), len(items))
                if pixels is not None:
                    pixels[rows] = stacked[0]
            advance(len(batch))
    if vectors[0] is None:
        raise CnnlabError(f"none of the {len(items)} images of {items.data} could be read "
                          f"(e.g. {next(iter(scan.errors.values()), '')})")
    return Embedded(scan, vectors[0], vectors[-1], pixels)


def _stored(store: torch.Tensor | None, rows: torch.Tensor, batch_vectors: torch.Tensor,
            count: int) -> torch.Tensor:
    """`batch_vectors` put into their rows of `store`, made (count, F) on the first batch."""
    if store is None:
        store = torch.zeros((count, batch_vectors.shape[1]))
    store[rows] = batch_vectors
    return store


def _label_issues(items: Items, scan: Scan, vectors: torch.Tensor, pixels: torch.Tensor | None,
                  embedder: embed.Embedder, settings: CheckSettings,
                  device: torch.device) -> tuple[np.ndarray, labels.LabelIssues, labels.FoldPlan]:
    pool = np.flatnonzero(scan.ok & (items.splits != "test"))
    given = items.labels[pool]
    plan = labels.plan_folds(given, items.class_names, settings.folds)
    count = len(items.class_names)
    if embedder.kind == "pixels":
        images = items.tensors[pool] if items.tensors is not None else pixels[pool]
        recipe = labels.CnnRecipe(epochs=settings.epochs)
        fit_predict = labels.cnn_model(images, given, count, recipe, device, settings.seed)
    else:
        fit_predict = labels.probe_model(vectors[pool], given, count)
    with tracked(f"cross-validation, {plan.folds} folds", plan.folds, quiet=settings.quiet) as advance:
        probabilities = labels.out_of_sample_probabilities(given, count, plan.folds,
                                                           settings.seed, fit_predict, advance)
    return pool, labels.find_issues(given, probabilities), plan


def run_check(data: str | None = None, settings: CheckSettings | None = None,
              **options: Any) -> CheckResult:
    """Check a dataset (anything `train --data` takes): label issues, duplicates and leaks,
    oddities. Writes nothing: see write_check."""
    settings = resolve(CheckSettings, settings, options)
    data = data or _run_data(settings.run)
    started = time.perf_counter()
    set_threads(settings.threads)
    device = resolve_device(settings.device)
    items = load_items(data)
    embedders = _embedders(data, settings, device, items)
    embedded = _scan_and_embed(items, embedders, settings, device)
    scan = embedded.scan
    pool, issues, plan = _label_issues(items, scan, embedded.features, embedded.pixels,
                                       embedders.features, settings, device)
    hash_bits = _hash_bits(settings, items, embedders.copies)
    similarity = settings.similarity or embed.SIMILARITY[embedders.copies.kind]
    features = None if embedded.features is embedded.copies else embedded.features
    with tracked("comparing every pair", len(items), quiet=settings.quiet) as advance:
        near = duplicates.find_pairs(embedded.copies, scan.ok, scan.pixel_hashes, scan.dhashes,
                                     scan.mirror_dhashes, similarity, hash_bits, advance, features)
    found = _findings(items, scan, pool, issues, near)
    summary = _summary(items, scan, found, embedders, plan, similarity, hash_bits)
    summary["duplicate_pairs"] = _pair_counts(items, near.pairs)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    return CheckResult(data, items, scan, found, summary, pool, issues)


def _hash_bits(settings: CheckSettings, items: Items, copies: embed.Embedder) -> int:
    """The difference hash's tolerance: a built-in set has no files to hash; on small images 8x8
    differences are shared by most images of a class (a 10,000-image Fashion-MNIST folder: 187,000
    pairs within 4 bits at pixel cosine 0.8 or more, against 29 pairs at 0.99), so by default the
    hash finds copies of photos only."""
    if items.tensors is not None:
        return -1
    if settings.hash_bits is not None:
        return settings.hash_bits
    return embed.HASH_BITS if copies.kind == "pretrained" else -1


def _run_data(run: str | None) -> str:
    if run is None:
        raise CnnlabError("give the data to check (a dataset name, a folder or a CSV), or --run "
                          "RUN to check the run's data")
    from ..config import load_config
    from ..run.folder import CONFIG

    config_file = Path(run) / CONFIG
    if not config_file.is_file():
        raise CnnlabError(f"{run} has no {CONFIG}: give the data to check")
    return load_config(config_file).data.name


def _findings(items: Items, scan: Scan, pool: np.ndarray, issues: labels.LabelIssues,
              near: duplicates.Neighbourhood) -> list[Finding]:
    found = [Finding("unreadable", items.names[i], items.splits[i],
                     items.class_names[items.labels[i]], note=reason, index=i, exclude="yes")
             for i, reason in sorted(scan.errors.items())]
    found += _label_findings(items, pool, issues)
    found += _pair_findings(items, near.pairs)
    odd, _ = oddities.outliers(near.knn_distance)
    odd += oddities.blanks(scan.spread, scan.ok)
    odd += oddities.unusual_shapes(scan.widths, scan.heights, scan.ok)
    odd += oddities.unusual_modes(scan.modes, scan.ok)[0]
    found += [_finding(items, o.index, o.kind, score=round(o.score, 4), note=o.note)
              for o in sorted(odd, key=lambda o: (KINDS.index(o.kind), -o.score))]
    return found


def _finding(items: Items, i: int, kind: str, **values: Any) -> Finding:
    return Finding(kind, items.names[i], str(items.splits[i]), items.class_names[items.labels[i]],
                   index=i, **values)


def _label_findings(items: Items, pool: np.ndarray, issues: labels.LabelIssues) -> list[Finding]:
    """Flagged labels, worst (lowest label quality) first; --exclude drops them."""
    flagged = np.flatnonzero(issues.flagged)
    order = flagged[np.argsort(issues.quality[flagged], kind="stable")]
    return [_finding(items, int(pool[k]), "label-issue",
                     suggested=items.class_names[issues.suggested[k]],
                     score=round(float(issues.quality[k]), 4), exclude="yes",
                     note=f"p(given) {issues.probabilities[k, items.labels[pool[k]]]:.2f}, "
                          f"p(suggested) {issues.probabilities[k].max():.2f}")
            for k in order]


def _pair_findings(items: Items, pairs: list[duplicates.Pair]) -> list[Finding]:
    """Leaks first, then copies within a split; the row's `file` is the copy --exclude drops: the
    training copy of a leak (the test set stays as it is), the later copy within train, both
    copies where their labels disagree (which one is right is for a person to say)."""
    rows = []
    for pair in sorted(pairs, key=lambda p: (p.match != "exact", -p.similarity)):
        first, second = pair.first, pair.second
        where = duplicates.scope(items.splits[first], items.splits[second])
        if where == "leak" and items.splits[first] == "test":
            first, second = second, first  # the training copy first
        conflict = items.labels[first] != items.labels[second]
        note = f"{pair.match} copy {where}; cosine {pair.similarity:.3f}"
        if pair.hash_distance >= 0:
            note += f", hash distance {pair.hash_distance}"
        if conflict:
            note += "; the labels differ"
        drop = "no" if where == "within test" else "yes"
        row = _finding(items, first, "leak" if where == "leak" else "duplicate",
                       score=pair.similarity, other_file=items.names[second],
                       other_split=str(items.splits[second]),
                       other_label=items.class_names[items.labels[second]], match=pair.match,
                       exclude=drop, note=note, other=second)
        rows.append(row)
        if conflict and where == "within train":
            rows.append(_finding(items, second, "duplicate", score=pair.similarity,
                                 other_file=items.names[first], other_split=str(items.splits[first]),
                                 other_label=items.class_names[items.labels[first]],
                                 match=pair.match, exclude="yes", note=note, other=first))
    return sorted(rows, key=lambda r: r.kind != "leak")


def _pair_counts(items: Items, pairs: list[duplicates.Pair]) -> dict[str, int]:
    """Copy pairs by where they sit, and how many are exact."""
    counts = {"leak": 0, "within train": 0, "within test": 0}
    for pair in pairs:
        counts[duplicates.scope(items.splits[pair.first], items.splits[pair.second])] += 1
    return {**counts, "exact": sum(p.match == "exact" for p in pairs),
            "test images with a copy in train": len({
                p.first if items.splits[p.first] == "test" else p.second for p in pairs
                if duplicates.scope(items.splits[p.first], items.splits[p.second]) == "leak"})}


def _summary(items: Items, scan: Scan, found: list[Finding], embedders: Embedders,
             plan: labels.FoldPlan, similarity: float, hash_bits: int) -> dict[str, Any]:
    counts = {kind: sum(f.kind == kind for f in found) for kind in KINDS}
    pairs = [f for f in found if f.kind in ("leak", "duplicate")]
    return {
        "data": items.data, "images": len(items), "read": int(scan.ok.sum()),
        "splits": {s: int((items.splits == s).sum()) for s in ("train", "val", "test")
                   if (items.splits == s).any()},
        "classes": len(items.class_names), "counts": counts,
        "pairs_with_different_labels": len({tuple(sorted((f.file, f.other_file))) for f in pairs
                                            if f.label != f.other_label}),
        "marked_exclude": len({f.file for f in found if f.exclude == "yes"}),
        "embedding": embedders.features.description,
        "copies_embedding": embedders.copies.description, "folds": plan.folds,
        "folds_note": plan.note,
        "label_model": "small CNN (fast), per fold" if embedders.features.kind == "pixels"
        else "exact linear probe, per fold",
        "similarity": similarity, "hash_bits": hash_bits,
        "balance": oddities.class_balance(items.labels, items.splits, scan.ok, items.class_names),
        "modes": dict(oddities.unusual_modes(scan.modes, scan.ok)[1]),
    }


CSV_COLUMNS = ("kind", "file", "split", "label", "suggested", "score", "other_file", "other_split",
               "other_label", "match", "exclude", "note")


def _row(finding: Finding) -> dict[str, Any]:
    return {column: getattr(finding, column) for column in CSV_COLUMNS}


def written_files(result: CheckResult) -> list[str]:
    """The files write_check writes: the figure only where there are label issues."""
    shown = [LABEL_ISSUES_FIGURE] if result.summary["counts"]["label-issue"] else []
    return [CHECK_JSON, CHECK_CSV, CHECK_PAGE, *shown]


# What a check writes (and a killed one leaves): a new check drops these of the old folder and
# keeps anything else in it.
CHECK_OWN = (CHECK_JSON, CHECK_CSV, CHECK_PAGE, LABEL_ISSUES_FIGURE, ".*.tmp")


def write_check(result: CheckResult, folder: str | Path) -> Path:
    """check.json, check.csv, check.html and (label issues found) label_issues.png in `folder`,
    which is replaced as a whole, in one step, once all are written: a check that fails midway
    (a full disk) leaves the earlier check's folder as it was, never a mix of the two."""
    import csv
    import io

    from ..base.fileio import atomic_write, atomic_write_text, check_replaceable, replacing
    from .figure import label_issues_figure
    from .page import render

    folder = Path(folder)
    check_replaceable(folder, CHECK_JSON, chosen=False)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS))
    writer.writeheader()
    writer.writerows([_row(f) for f in result.findings])
    figure = label_issues_figure(result)
    with replacing(folder, CHECK_OWN) as work:
        CheckReport.of(result.summary, result.findings).write(work)
        atomic_write_text(work / CHECK_CSV, buffer.getvalue())
        atomic_write_text(work / CHECK_PAGE, render(result))
        if figure is not None:
            atomic_write(work / LABEL_ISSUES_FIGURE, lambda tmp: tmp.write_bytes(figure))
    return folder


def check(data: str | Path | None = None, settings: CheckSettings | None = None,
          **options: Any) -> CheckResult:
    """Check a dataset (a built-in name, a folder or a CSV) for likely label errors, duplicates and
    train/test leaks, and oddities; write check.json, check.csv and check.html into `out`
    (default checks/NAME, or RUN/check with run=RUN). Returns the CheckResult, its folder set."""
    from ..base.fileio import check_replaceable

    settings = resolve(CheckSettings, settings, options)
    if settings.out:  # before the work: a check does not replace a folder of other files
        check_replaceable(Path(settings.out), CHECK_JSON, chosen=True)
    result = run_check(str(data) if data is not None else None, settings)
    result.folder = write_check(result, default_folder(result.data, settings))
    return result


WHAT = {"unreadable": "files that cannot be decoded (named in check.csv)",
        "label-issue": "likely wrong labels (cleanlab's confident learning, out-of-sample)",
        "leak": "training images with a copy in test",
        "duplicate": "copies within train or within test",
        "outlier": "images far from every other in feature space",
        "blank": "near-blank images", "size": "unusual sizes", "aspect": "unusual aspect ratios",
        "mode": "colour modes unlike the rest"}


def summary_rows(result: CheckResult) -> list[list[str]]:
    """The terminal's first table: each kind of finding and its count."""
    counts = result.summary["counts"]
    rows = [[kind, f"{counts[kind]:,}", WHAT[kind]] for kind in KINDS]
    balance = result.summary["balance"]
    ratio = balance["imbalance"]
    rows.append(["classes", str(result.summary["classes"]),
                 f"largest training class / smallest: {ratio:.1f}x" if ratio else
                 "a class has no training images"])
    return rows


def worst_rows(result: CheckResult) -> list[tuple[str, list[str], list[list[str]]]]:
    """Tables of the worst label issues and leaks (check.csv has every finding)."""
    tables = []
    issues = [f for f in result.findings if f.kind == "label-issue"][:WORST]
    if issues:
        tables.append((f"worst label issues (of {result.summary['counts']['label-issue']})",
                       ["file", "given", "suggested", "quality"],
                       [[f.file, f.label, f.suggested, f"{f.score:.3f}"] for f in issues]))
    pairs = [f for f in result.findings if f.kind in ("leak", "duplicate")][:WORST]
    if pairs:
        tables.append(("copies (leaks first)", ["file", "copy of", "match", "cosine"],
                       [[f.file, f.other_file, f.match, f"{f.score:.3f}"] for f in pairs]))
    return tables
