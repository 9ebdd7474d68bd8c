"""Robust accuracy of a trained run against epsilon, with its curve and adversarial examples.

Writes RUN/attack/: metrics.json (the table), robust_accuracy.png (the curve) and examples.png
(clean and adversarial images with their predictions, and the perturbation magnified).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..base.devices import resolve_device
from ..base.errors import CnnlabError
from ..base.fileio import atomic_write_json
from ..base.progress import tracked
from ..base.settings import resolve
from ..data.images import to_float
from ..data.splits import Split
from ..run.data import pick_split
from ..run.folder import data_qualifiers, load_model, results_folder
from ..run.results import AttackMetrics, RobustAccuracy
from . import figures as plots
from .attacks import Attack, check_eps, correct, make_attack, pgd_step_size, seeded
from .settings import AttackSettings

EXAMPLES_SHOWN = 6
EXAMPLE_POOL = 64  # the examples are chosen among the first images


@dataclass
class AttackResult:
    metrics: AttackMetrics
    folder: Path


@dataclass
class _Tally:
    """Counts over the attacked images, one slot per epsilon, and the images kept for the figure."""

    eps: list[float]
    images: int = 0
    clean: int = 0
    robust: list[int] = field(default_factory=list)
    adversarial: list[int] = field(default_factory=list)
    pool: list[tuple[torch.Tensor, ...]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.robust, self.adversarial = [0] * len(self.eps), [0] * len(self.eps)


def _eps_number(text: str) -> float:
    """'0.03' or a fraction of the 0..255 scale papers quote, '8/255'."""
    numerator, _, denominator = text.strip().partition("/")
    return float(numerator) / float(denominator) if denominator else float(numerator)


def parse_eps(value: str | float | Sequence[float], norm: str = "linf") -> list[float]:
    """"0,0.01,8/255" (or numbers) -> sorted distinct epsilons, each >= 0 (and at most 1 for L-inf,
    the largest change of a pixel in [0, 1])."""
    if isinstance(value, str):
        try:
            values = [_eps_number(part) for part in value.split(",") if part.strip()]
        except (ValueError, ZeroDivisionError):
            raise CnnlabError(f"--eps must be numbers separated by commas, like 0,0.01,8/255,0.1; "
                              f"got {value!r}") from None
    elif isinstance(value, (int, float)):
        values = [float(value)]
    else:
        values = [float(v) for v in value]
    if not values:
        raise CnnlabError("--eps needs at least one number, like 0,0.01,0.03,0.1")
    too_large = [v for v in values if norm == "linf" and v > 1]
    if too_large:
        raise CnnlabError(f"--eps {too_large[0]:g} is above 1: with L-inf, eps is the largest change "
                          f"of a pixel in [0, 1] (for {too_large[0]:g} on the 0..255 scale, write "
                          f"{too_large[0]:g}/255)")
    return sorted({check_eps(v, "--eps") for v in values})


def first_batches(split: Split, limit: int | None, batch_size: int) -> Iterator[tuple[torch.Tensor, ...]]:
    """The first `limit` images of a split (all of them with None), in batches."""
    left = len(split) if limit is None else limit
    for images, labels in split.batches(batch_size):
        if left <= 0:
            return
        yield images[:left], labels[:left]
        left -= len(labels)


def _attack_batch(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, tally: _Tally,
                  attacks: list[Attack]) -> None:
    """Attack one batch at every epsilon. An image stays robust at eps only if it was classified
    correctly clean and under every attack up to eps (the per-image worst case)."""
    robust = correct(model, images, labels)  # (B,) bool
    tally.images += len(labels)
    tally.clean += int(robust.sum())
    adversarial = images
    for index, attack in enumerate(attacks):
        adversarial = attack(images, labels)
        hit = correct(model, adversarial, labels)
        robust = robust & hit
        tally.adversarial[index] += int(hit.sum())
        tally.robust[index] += int(robust.sum())
    if sum(len(kept[0]) for kept in tally.pool) < EXAMPLE_POOL:
        tally.pool.append((images.cpu(), adversarial.cpu(), labels.cpu()))


def measure(model: nn.Module, split: Split, settings: AttackSettings | None = None, *,
            device: torch.device | None = None, **options: Any) -> _Tally:
    """Attack the first `settings.limit` images of `split` at every epsilon (sorted ascending)."""
    settings = resolve(AttackSettings, settings, options)
    device = device or torch.device("cpu")
    eps = parse_eps(settings.eps, settings.norm)
    attacks = [make_attack(model, settings.method, e, norm=settings.norm, steps=settings.steps,
                           step_size=settings.step_size) for e in eps]
    tally = _Tally(eps)
    limit = settings.limit
    total = len(split) if limit is None else min(limit, len(split))
    with seeded(settings.seed, device), tracked("attacking", total, quiet=settings.quiet) as advance:
        for images, labels in first_batches(split, limit, settings.batch_size):
            _attack_batch(model, to_float(images.to(device)), labels.to(device), tally, attacks)
            advance(len(labels))
    return tally


def _table(tally: _Tally, settings: AttackSettings) -> tuple[RobustAccuracy, ...]:
    return tuple(RobustAccuracy(
        eps, tally.robust[index] / tally.images, tally.adversarial[index] / tally.images,
        pgd_step_size(eps, settings.steps, settings.step_size) if settings.method == "pgd" else None)
        for index, eps in enumerate(tally.eps))


@torch.no_grad()
def _examples(model: nn.Module, tally: _Tally, class_names: list[str], eps: float, path: Path,
              title: str) -> None:
    """Clean and adversarial (at the largest eps) images; fooled ones first."""
    clean, adversarial, labels = (torch.cat(parts) for parts in zip(*tally.pool, strict=True))
    device = next(model.parameters()).device
    clean_p = model.predict_proba(clean.to(device)).cpu()
    adv_p = model.predict_proba(adversarial.to(device)).cpu()
    fooled = (clean_p.argmax(1) == labels) & (adv_p.argmax(1) != labels)
    order = torch.cat([torch.nonzero(fooled).flatten(), torch.nonzero(~fooled).flatten()])
    chosen = order[:EXAMPLES_SHOWN].tolist()

    def caption(probabilities: torch.Tensor, i: int) -> str:
        top = int(probabilities[i].argmax())
        return f"{class_names[top]} ({probabilities[i, top]:.0%})"

    captions = [(f"true {class_names[labels[i]]}\npred {caption(clean_p, i)}",
                 f"eps {eps:g}\npred {caption(adv_p, i)}") for i in chosen]
    plots.adversarial_examples(clean[chosen], adversarial[chosen], captions, path, title)


def _describe(settings: AttackSettings) -> str:
    name = {"linf": "L-inf", "l2": "L2"}[settings.norm]
    return f"PGD ({name}, {settings.steps} steps)" if settings.method == "pgd" else "FGSM (L-inf)"


def _setting_qualifiers(settings: AttackSettings) -> list[str]:
    """'fgsm', 'pgd-l2', 'pgd-linf-50steps': the attack's name where it is not the default."""
    default = AttackSettings()
    name = settings.method
    if settings.method == "pgd":
        name += f"-{settings.norm}" + (f"-{settings.steps}steps" if settings.steps != default.steps
                                       else "")
    return [] if name == f"{default.method}-{default.norm}" else [name]


def attack_run(run: str | Path, settings: AttackSettings | None = None,
               **options: Any) -> AttackResult:
    """Robust accuracy of a run's best model for each epsilon; writes RUN/attack/ (for another
    attack, split or data: RUN/attack-fgsm/, RUN/attack-pgd-l2-val/ ..., or `out`).

    Args:
        run: the run folder.
        settings: AttackSettings (default: its defaults); `options` override its fields by name:
            method ("fgsm" or "pgd" with a random start), eps (in pixel units of the original
            image, [0, 1], before normalization: "0,0.01,0.03" or numbers; adversarial images are
            clipped to [0, 1]), norm ("linf" or "l2", PGD only), steps and step_size (PGD), data and
            split (the images attacked), limit (the first N images, None: all), seed (PGD's random
            start, so a run gives the same numbers every time), batch_size, device.
    """
    settings = resolve(AttackSettings, settings, options)
    eps_list = parse_eps(settings.eps, settings.norm)
    if settings.limit is not None and settings.limit < 1:
        raise CnnlabError(f"--limit must be at least 1, got {settings.limit}")
    run = Path(run)
    torch_device = resolve_device(settings.device)
    model, card = load_model(run, torch_device)
    make_attack(model, settings.method, 0.0, norm=settings.norm, steps=settings.steps,
                step_size=settings.step_size)  # checks the settings before the work starts
    split, method = settings.split, settings.method
    chosen, data_name = pick_split(run, card, settings.data, split)
    tally = measure(model, chosen, settings, device=torch_device)
    rows = _table(tally, settings)
    described = _describe(settings)
    metrics = AttackMetrics(run=str(run), data=data_name, split=split, images=tally.images,
                            method=method, norm=settings.norm,
                            clean_accuracy=tally.clean / tally.images, results=rows,
                            seed=settings.seed, steps=settings.steps if method == "pgd" else None,
                            random_start=settings.norm == "linf" if method == "pgd" else None)
    out = results_folder(run, "attack", settings.out,
                         _setting_qualifiers(settings) + data_qualifiers(split, settings.data))
    plots.robust_accuracy_curve([row.to_dict() for row in rows], metrics.clean_accuracy,
                                out / "robust_accuracy.png",
                                f"{described}, {data_name} {split} ({tally.images} images)")
    _examples(model, tally, list(card.class_names), eps_list[-1], out / "examples.png",
              f"{described} at eps {eps_list[-1]:g}")
    atomic_write_json(out / "metrics.json", metrics.to_dict())
    return AttackResult(metrics, out)

