"""Training on a pretrained backbone's features: the frozen backbone's head fitted once as an exact
linear probe (instead of epochs), and fine-tuning's head fitted the same way before any layer
trains."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..base import figures as plots
from ..data import DatasetSplits
from ..run.results import EpochRow
from .probe import PROBE_PATH, Probe, ProbeFit, probe_summary, write_probe_path
from .session import Session
from .trainer import Trainer
from .transfer import FeatureSplit, cache_features, fit_probe_head

log = logging.getLogger("cnnlab")


def _features(trainer: Trainer, data: DatasetSplits) -> tuple[FeatureSplit, FeatureSplit | None]:
    """The train and val splits as the backbone sees them (no augmentation)."""
    shape, engine = data.input_shape, trainer.config.engine
    train = cache_features(trainer.model, data.train, trainer.device, shape, engine)
    val = cache_features(trainer.model, data.val, trainer.device, shape, engine) \
        if data.val else None
    return train, val


def fit_probe(session: Session, data: DatasetSplits) -> str:
    """A frozen backbone on cached features: fit the head to convergence, once, and record it as
    the run's one epoch."""
    if session.state.epoch >= 1:
        return "finished"  # resumed after the fit
    trainer, reporter = session.trainer, session.reporter
    started = time.perf_counter()
    train, val = _features(trainer, data)
    reporter.message(f"backbone frozen: its features for {len(train) + len(val or [])} images "
                     f"computed once in {time.perf_counter() - started:.1f}s")
    started = time.perf_counter()
    probe = fit_probe_head(trainer.model, train, val, trainer.loss_weights(), refit=True)
    chosen = probe.chosen
    row = EpochRow.measured(1, (chosen.train_loss, chosen.train_acc),
                            (chosen.val_loss, chosen.val_acc) if val is not None else None,
                            lr=None, seconds=time.perf_counter() - started)
    if val is not None:  # refitted on train + val: val is no longer held out from this model
        session.card = session.card.replace(fitted_on=("train", "val"))
    session.end_of_epoch(row, head=f"linear probe, C={probe.c:g}")
    if trainer.ranks.is_main:
        _record_path(session.run_dir, probe)
    reporter.message(probe_summary(probe, row.seconds))
    if val is not None:
        reporter.message("the penalty was chosen on the validation split, then the head refitted "
                         "on train + validation: validation accuracy above is before the refit, and "
                         "only the test split is held out from the saved model")
    return "finished"


def start_from_probe(session: Session, data: DatasetSplits) -> Probe:
    """Fine-tuning: give the new head the exact linear probe's weights before any layer trains
    (LP-FT, Kumar et al. 2022), so the first steps do not tear the pretrained features apart to
    fit a head that knows nothing. The probe minimizes the loss fine-tuning minimizes (label
    smoothing included): a head fitted without it is far too confident for the smoothed loss, and
    the first epoch spent undoing that cost 14 points of validation accuracy on flowers12."""
    trainer = session.trainer
    started = time.perf_counter()
    train, val = _features(trainer, data)
    probe = fit_probe_head(trainer.model, train, val, trainer.loss_weights(), refit=False,
                           label_smoothing=trainer.config.label_smoothing)
    kept = trainer.config.freeze_stages
    rest = (f"the network after its first {kept} stages trains (--freeze-stages 0: all of it)"
            if kept else "every layer trains")
    session.reporter.message(f"head fitted first as a linear probe on the pretrained features "
                             f"({probe_summary(probe, time.perf_counter() - started)}); now {rest}")
    return probe


def _record_path(run_dir: Path, probe: Probe) -> None:
    """probe.csv, and as curves.png its plot: the one epoch would make a one-point curve, where the
    penalties tried show how the choice was made. A choice at the grid's edge is warned of."""
    write_probe_path(run_dir, probe.path)
    probe_curves(probe.path, probe.c, run_dir / "curves.png")
    edge = edge_of_grid(probe)
    if edge:
        log.warning(edge)


def edge_of_grid(probe: Probe) -> str | None:
    """A warning where the chosen penalty is the strongest or weakest tried: the best may lie
    beyond the grid."""
    tried = [fit.c for fit in probe.path]
    if len(tried) < 2 or min(tried) < probe.c < max(tried):
        return None
    side = "weakest" if probe.c == max(tried) else "strongest"
    return (f"the linear probe chose C={probe.c:g}, the {side} penalty tried "
            f"({min(tried):g} to {max(tried):g}): a better one may lie beyond; see {PROBE_PATH} "
            f"and curves.png")


def probe_curves(path: list[ProbeFit], chosen: float, out: Path) -> None:
    """Accuracy (%) and loss against the penalty C (log axis), train beside validation, the
    chosen C marked: what RUN/probe.csv holds."""
    values = [fit.c for fit in path]
    figure, (acc_axis, loss_axis) = plots.plt.subplots(1, 2, figsize=(9.2, 4),
                                                       layout="constrained")
    for axis, key, scale in ((acc_axis, "acc", 100), (loss_axis, "loss", 1)):
        axis.plot(values, [scale * getattr(fit, f"train_{key}") for fit in path], "o--",
                  label="train")
        axis.plot(values, [scale * getattr(fit, f"val_{key}") for fit in path], "o-",
                  label="validation")
        axis.axvline(chosen, linestyle=":", color="green", label=f"chosen C={chosen:g}")
        axis.set_xscale("log")
        axis.set_xlabel("C (inverse L2 penalty; right: weaker)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    acc_axis.set_title("linear probe: accuracy (%)")
    loss_axis.set_title("loss")
    plots.save_figure(figure, out)
