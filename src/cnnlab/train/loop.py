"""The training loop: plain train_one_epoch() and fit(), in the style of torchvision's references.

What one step needs is the Trainer (trainer.py); the run folder, the epochs' bookkeeping, resume and
extension are the Session's (session.py); validation, the weights' average and the frozen-backbone
probe have modules of their own.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from ..base.devices import resolve_device, set_threads
from ..base.distributed import (
    Ranks,
    all_finite,
    backend,
    from_main,
    join,
    leave,
    local_batch_size,
    ranks_from_environment,
    shard,
    summed,
)
from ..base.errors import CnnlabError
from ..base.fileio import atomic_write_text, folder_lock
from ..config import TrainConfig, apply_overrides
from ..data import DatasetSplits, load_dataset
from ..data.splits import describe_splits
from ..models import Classifier
from ..run.contract import ModelCard
from ..run.folder import CONFIG, check_writable, load_model, new_run_dir, uses_flip, write_results
from ..run.inference import loss_and_accuracy, output_layer, predict_logits
from ..run.results import EpochRow, TrainingResults
from .data_checks import class_counts, describe_counts, fit_batch_to_data, imbalance_warning
from .distill import teacher_labelled
from .frozen import fit_probe, start_from_probe
from .progress import Reporter
from .recipes import resolve
from .session import Session
from .trackers import check_trackers, open_trackers
from .trainer import Trainer, build_trainer
from .transfer import cache_features, can_cache, start_from_run
from .validate import validate, validate_robust

EpochCallback = Callable[[Classifier, EpochRow], None]

log = logging.getLogger("cnnlab")


class TrainingDiverged(Exception):
    """The loss became NaN or infinite."""


class TrainingStopped(Exception):
    """Raised by an on_epoch_end callback to end training after that epoch, as early stopping
    does, with `status` in results.json (a tuner's pruned trial: "pruned")."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass
class Run:
    """What `train` returns: the run folder and what happened in it."""

    path: Path
    config: TrainConfig
    history: list[EpochRow]
    best_epoch: int
    best_val_accuracy: float | None
    test_accuracy: float | None
    seconds: float
    status: str  # finished | stopped early | diverged | a TrainingStopped's (pruned)

    def results(self) -> TrainingResults:
        """What RUN/results.json records."""
        rounded = lambda value: None if value is None else round(value, 6)  # noqa: E731
        return TrainingResults(status=self.status, epochs=len(self.history),
                               best_epoch=self.best_epoch,
                               best_val_accuracy=rounded(self.best_val_accuracy),
                               test_accuracy=rounded(self.test_accuracy),
                               seconds=round(self.seconds, 1))


def train_one_epoch(trainer: Trainer, data: DatasetSplits, reporter: Reporter,
                    epoch: int) -> tuple[float, float]:
    """One pass over the shuffled training split (this rank's shard of it); returns (mean loss,
    accuracy) over every rank."""
    config = trainer.config
    trainer.start_epoch(epoch)
    # Every rank draws the same order (and the same augmentation parameters, for other images):
    # their random states stay equal, so rank 0's checkpoint resumes all of them exactly.
    order = shard(torch.randperm(len(data.train), generator=trainer.generator), trainer.ranks)
    batch_size = local_batch_size(config.batch_size, trainer.ranks)
    reporter.start_epoch(epoch, config.epochs, math.ceil(len(order) / batch_size))
    loss_sum, correct, seen = torch.zeros(()), torch.zeros((), dtype=torch.long), 0
    for step, (images, labels) in enumerate(data.train.batches(batch_size, order)):
        labels = labels.to(trainer.device)
        inputs = trainer.prepare(images, labels)
        with trainer.autocast():
            logits = trainer.network(inputs)  # (B, num_classes)
            loss = trainer.loss(logits, labels, inputs)
        if not all_finite(loss, trainer.ranks):
            raise TrainingDiverged(f"loss became {loss.item()} at epoch {epoch}, step {step + 1}")
        if epoch == 1 and step == 0 and trainer.distillation is None:
            _check_first_loss(loss.item(), logits.shape[1], reporter)
        trainer.step(loss)
        loss_sum += loss.detach().cpu() * len(labels)
        correct += (logits.argmax(1) == labels).sum().cpu()
        seen += len(labels)
        if reporter.live:  # .item() forces a device sync: only pay for it when someone watches
            reporter.step(loss_sum.item() / seen, correct.item() / seen)
    loss_total, correct_total, count = summed([loss_sum, correct, seen], trainer.ranks,
                                              trainer.device)
    return loss_total / count, correct_total / count


def _check_first_loss(loss: float, num_classes: int, reporter: Reporter) -> None:
    """A new head predicts every class alike, so training starts near ln K; far above it, the
    first step will throw the weights far, and the run rarely recovers."""
    expected = math.log(num_classes)
    if loss > 2 * expected + 1:
        reporter.message(f"[yellow]warning:[/yellow] the first batch's loss is {loss:.2f}, far above "
                         f"ln {num_classes} = {expected:.2f} for a fresh head: check the labels, "
                         f"lower --lr, or see whether the model's head was initialized as it should")


def _check_finite(trainer: Trainer, row: EpochRow) -> None:
    """Nothing that is not finite is saved: a NaN validation loss, weight or batch-norm statistic
    ends training before this epoch's model or checkpoint is written (every rank sees the same)."""
    if row.has_validation and not math.isfinite(row.val_loss):
        raise TrainingDiverged(f"the validation loss became {row.val_loss} at epoch {row.epoch}")
    tensors = [*trainer.model.parameters(), *trainer.model.buffers()]
    if not all(torch.isfinite(t).all() for t in tensors if t.is_floating_point()):
        raise TrainingDiverged(f"the weights stopped being finite at epoch {row.epoch}")


def _epoch(trainer: Trainer, data: DatasetSplits, reporter: Reporter, epoch: int) -> EpochRow:
    """Train one epoch and validate; returns its metrics.csv row."""
    started = time.perf_counter()
    train = train_one_epoch(trainer, data, reporter, epoch)
    seconds = time.perf_counter() - started  # training only, validation excluded
    val = validate(trainer, data.val) if data.val is not None else None
    robust = validate_robust(trainer, data.val) if trainer.adversary and data.val else None
    return EpochRow.measured(epoch, train, val, trainer.last_lr, seconds, robust)


def run_epochs(session: Session, data: DatasetSplits,
               on_epoch_end: EpochCallback | None = None) -> str:
    """Train the epochs left; returns the status."""
    trainer, config, state = session.trainer, session.trainer.config, session.state
    for epoch in range(state.epoch + 1, config.epochs + 1):
        row = _epoch(trainer, data, session.reporter, epoch)
        _check_finite(trainer, row)
        session.end_of_epoch(row)
        session.reporter.end_epoch(row, config.epochs)
        if on_epoch_end is not None:
            on_epoch_end(trainer.kept, row)
        if config.patience is not None and state.bad_epochs >= config.patience:
            session.reporter.message(f"stopping early: no better validation accuracy for "
                                     f"{config.patience} epochs")
            return "stopped early"
    return "finished"


def _train(session: Session, data: DatasetSplits, on_epoch_end: EpochCallback | None) -> str:
    """Train (or fit the probe) to the end; returns the status."""
    trainer, config = session.trainer, session.trainer.config
    if trainer.probe_only:  # a frozen backbone: the head is a linear probe on cached features
        return fit_probe(session, data)
    if config.freeze is not None:
        session.reporter.message("backbone frozen, but augmentation (or adversarial training) "
                                 "changes the images every step, so its features cannot be "
                                 "cached: each step runs the frozen backbone (slower)")
    if config.pretrained and config.probe_first and session.state.epoch == 0:
        start_from_probe(session, data)
    return run_epochs(session, data, on_epoch_end)


def _guarded(session: Session, data: DatasetSplits, on_epoch_end: EpochCallback | None) -> str:
    """_train, with each way it can stop said in one line that names what was kept."""
    state, run_dir = session.state, session.run_dir
    try:
        return _train(session, data, on_epoch_end)
    except TrainingDiverged as error:
        kept = (f"The best model so far (epoch {state.best_epoch}) is kept in {run_dir}"
                if state.best_epoch else "No model was saved")
        session.reporter.message(f"[red]stopped: {error}.[/red] {kept}; try a lower --lr")
        return "diverged"
    except TrainingStopped as stop:  # the epoch that raised it is recorded and saved
        session.reporter.message(f"stopped: {stop}")
        return stop.status
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"{session.what_is_kept()}; continue with: cnnlab train "
                                f"--resume {run_dir}") from None
    except OSError as error:  # a full disk or a folder gone read-only: every write is atomic
        raise CnnlabError(f"cannot write {error.filename or run_dir}: {error.strerror or error}; "
                          f"{session.what_is_kept()}; make room, then continue with: "
                          f"cnnlab train --resume {run_dir}") from None


def fit(config: TrainConfig, *, resume: str | Path | None = None, quiet: bool = False,
        on_epoch_end: EpochCallback | None = None) -> Run:
    """Train a model as `config` says (or continue the run folder `resume`) and return the Run.

    `on_epoch_end(model, row)` runs after each epoch is recorded (row: that epoch's EpochRow, as
    metrics.csv has it); its time is not in the row's training seconds."""
    ranks = ranks_from_environment()
    if not ranks.is_main:  # one process speaks for all: the others' warnings would repeat its own
        logging.getLogger("cnnlab").setLevel(logging.ERROR)
    set_threads(config.threads, ranks.local_world_size)
    device = join(ranks, resolve_device(config.device))
    try:
        return _fit(config, resume, Reporter(quiet or not ranks.is_main), on_epoch_end, ranks,
                    device)
    finally:
        leave(ranks)


def _fit(config: TrainConfig, resume: str | Path | None, reporter: Reporter,
         on_epoch_end: EpochCallback | None, ranks: Ranks, device: torch.device) -> Run:
    started = time.perf_counter()
    config, data, trainer, card = _prepare(config, resume, reporter, ranks, device)
    run_dir = _open_run_dir(config, resume, card, ranks, _values_used(config, data, device))
    session = Session(trainer, card, run_dir, reporter)
    with folder_lock(session.run_dir, "training") if ranks.is_main else nullcontext():
        if resume is not None:
            session.resume()
        if ranks.is_main:
            session.trackers = open_trackers(config, session.run_dir)
        where = f"{ranks.world_size} processes ({backend()})" if ranks.enabled else str(device)
        reporter.message(f"training {card.name} on {data.name} ({len(data.train)} train images, "
                         f"{data.num_classes} classes) on {where}; run folder {session.run_dir}")
        try:
            status = _guarded(session, data, on_epoch_end)
            run = _finish(session, data, status, time.perf_counter() - started)
        finally:
            session.close_trackers()
    return run


def _finish(session: Session, data: DatasetSplits, status: str, seconds: float) -> Run:
    """The Run, its results.json, and the trackers told how it ended (rank 0 only)."""
    state, main = session.state, session.trainer.ranks.is_main
    tested = _test_predictions(session, data) if main else None
    run = Run(session.run_dir, session.trainer.config, state.history, state.best_epoch,
              state.best_score if data.val is not None and state.best_epoch else None,
              loss_and_accuracy(*tested)[1] if tested else None, seconds, status)
    if main:
        write_results(run.path, run.results())
        session.finish_trackers(run.results(), tested, data.class_names)
    return run


def _test_predictions(session: Session,
                      data: DatasetSplits) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The saved model's logits (N, K) and the labels on the test split, where there are both."""
    run_dir, device = session.run_dir, session.trainer.device
    if data.test is None or not (run_dir / "model.safetensors").is_file():
        return None
    model, card = load_model(run_dir, device)
    if session.trainer.config.freeze == "backbone" and not card.flip_tta:
        # the backbone is the pretrained one, whose features the probe's graph already gives
        test = cache_features(model, data.test, device, data.input_shape,
                              session.trainer.config.engine)
        with torch.no_grad():
            return output_layer(model)(test.features.to(device)).float().cpu(), test.labels
    channels_last = session.trainer.config.channels_last  # as it trained: 2-3x eager's NCHW
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return predict_logits(model, data.test, device, channels_last=channels_last)


def _prepare(config: TrainConfig, resume: str | Path | None, reporter: Reporter, ranks: Ranks,
             device: torch.device) -> tuple[TrainConfig, DatasetSplits, Trainer, ModelCard]:
    """The settings resolved and checked, the data loaded, the trainer built (from --init's weights
    where asked)."""
    batch_chosen = config.batch_size is not None  # before the recipe fills it in
    config, choice = resolve(config)
    if resume is None and ranks.is_main:
        check_writable(config.out)
    if ranks.is_main:
        check_trackers(config, resume)
    if choice is not None and resume is None:
        reporter.message(choice)
    data = load_dataset(config.data)
    if config.unlabelled:
        data = teacher_labelled(data, config, device, reporter.message)
    batch_warnings: list[str] = []
    # config.yaml records the batch used, so --resume agrees; a probe fitted on cached features
    # takes no batches, so it has nothing to fit or warn of
    if resume is None and not can_cache(config, uses_flip(config, data)):
        config, batch_warnings = fit_batch_to_data(config, len(data.train), batch_chosen)
    trainer, card = build_trainer(config, data, device, ranks)
    if resume is None:  # said once the settings are known to be sound
        _describe_data(config, data, batch_warnings, reporter)
        if config.init:
            reporter.message(start_from_run(trainer.model, config.init, data.input_shape))
    return config, data, trainer, card


def _describe_data(config: TrainConfig, data: DatasetSplits, warnings: list[str],
                   reporter: Reporter) -> None:
    """The class sizes, and warnings of imbalance and of too few steps."""
    counts = class_counts(data)
    reporter.message(describe_splits(data))
    reporter.message(describe_counts(data.class_names, counts))
    imbalance = imbalance_warning(data.class_names, counts, config.class_weights)
    for warning in ([imbalance] if imbalance else []) + warnings:
        log.warning(warning)


def run_name(config: TrainConfig, card: ModelCard) -> str:
    """DATA-MODEL, and -probe for a frozen backbone: the two ways to reuse a pretrained network
    on the same data get names that say which is which, not NAME and NAME-2."""
    name = f"{config.data.name.rstrip('/').split('/')[-1]}-{card.name}"
    return f"{name}-probe" if config.freeze == "backbone" else name


def _values_used(config: TrainConfig, data: DatasetSplits, device: torch.device) -> dict:
    """The settings that left the choice to cnnlab, as it chose: config.yaml records these, so it
    says what ran and `--config` runs it again."""
    return {"augment.flip": uses_flip(config, data),
            "device": device.type if config.device == "auto" else config.device}


def _open_run_dir(config: TrainConfig, resume: str | Path | None, card: ModelCard,
                  ranks: Ranks, used: dict) -> Path:
    if resume is not None:
        return Path(resume)
    run_dir = None
    if ranks.is_main:
        run_dir = new_run_dir(config.out, run_name(config, card))
        if config.out and run_dir != Path(config.out):  # said even under --quiet
            log.warning("%s holds a run already: this run goes to %s", config.out, run_dir)
        recorded = apply_overrides(config, {**used, "out": str(run_dir)})
        atomic_write_text(run_dir / CONFIG, recorded.to_yaml())
    return Path(from_main(str(run_dir), ranks))

