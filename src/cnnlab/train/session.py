"""A training session: the trainer, its run folder, the card its model is saved with, the reporter
and the bookkeeping of epochs, with what they do together: record an epoch, resume, extend."""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from sklearn.metrics import confusion_matrix

from ..base.errors import CnnlabError
from ..base.fileio import atomic_write_text, remove_stale_temp_files
from ..config import load_config
from ..evaluate import confusion_matrix_figure
from ..run.contract import ModelCard
from ..run.folder import CHECKPOINT, CONFIG, load_checkpoint, save_checkpoint, save_model, write_metrics
from ..run.results import EpochRow, TrainingResults
from .checkpoint import TrainState, checkpoint_of, missing_rng_states, restore
from .figures import training_curves
from .optim import make_scheduler
from .progress import Reporter
from .trainer import Trainer

log = logging.getLogger("cnnlab")


@dataclass
class Session:
    """One run's training, from its first epoch (or its checkpoint) to its end."""

    trainer: Trainer
    card: ModelCard
    run_dir: Path
    reporter: Reporter
    state: TrainState = field(default_factory=TrainState)
    saved_model_epoch: int = 0  # the epochs whose model and checkpoint are on disk, whole
    saved_checkpoint_epoch: int = 0
    trackers: list = field(default_factory=list)  # TensorBoard, MLflow (train/trackers.py)

    def end_of_epoch(self, row: EpochRow, head: str | None = None) -> None:
        """Record the epoch (on every rank, so they agree on early stopping); keep the best model;
        write the resumable checkpoint last. Only rank 0 writes files. `head` says how the output
        layer was fitted, where not by gradient steps."""
        best = self.state.record(row)
        if not self.trainer.ranks.is_main:
            return
        if best:
            card = self.card.replace(epoch=row.epoch, val_accuracy=row.val_acc,
                                     **({"head": head} if head else {}))
            save_model(self.run_dir, self.trainer.kept, card)
            self.saved_model_epoch = row.epoch
        write_metrics(self.run_dir, self.state.history)
        smoothing = 0.0 if self.trainer.probe_only else self.trainer.config.label_smoothing
        training_curves([epoch.to_dict() for epoch in self.state.history],
                        self.run_dir / "curves.png", best_epoch=self.state.best_epoch,
                        label_smoothing=smoothing, adversarial=self.trainer.adversary is not None)
        save_checkpoint(self.run_dir / CHECKPOINT, checkpoint_of(self.trainer, self.state))
        self.saved_checkpoint_epoch = row.epoch
        for tracker in self.trackers:
            tracker.epoch(row)

    def finish_trackers(self, results: TrainingResults,
                        tested: tuple[torch.Tensor, torch.Tensor] | None,
                        class_names: list[str]) -> None:
        """Tell the trackers how training ended, with the curves and the test split's confusion
        matrix as figures."""
        if not self.trackers:
            return
        with tempfile.TemporaryDirectory() as scratch:
            figures = {"curves": self.run_dir / "curves.png"}
            if tested is not None:
                logits, labels = tested
                figures["confusion_matrix"] = Path(scratch) / "confusion_matrix.png"
                matrix = confusion_matrix(labels, logits.argmax(1), labels=range(len(class_names)))
                confusion_matrix_figure(matrix, class_names, figures["confusion_matrix"],
                                        f"{self.run_dir.name}: test split")
            for tracker in self.trackers:
                tracker.finish(self.trainer.config, results, figures)

    def close_trackers(self) -> None:
        for tracker in self.trackers:
            tracker.close()

    def resume(self) -> None:
        """Continue from last.ckpt; a run stopped before its first checkpoint starts over in its
        own folder. Temporary files a killed run left behind are removed first."""
        if self.trainer.ranks.is_main:
            remove_stale_temp_files(self.run_dir)
        if not (self.run_dir / CHECKPOINT).is_file():
            self.reporter.message(f"{self.run_dir} has no checkpoint yet (it stopped before its "
                                  f"first epoch ended): starting it over in the same folder")
            return
        checkpoint = load_checkpoint(self.run_dir / CHECKPOINT)
        self.state = restore(self.trainer, checkpoint)
        self._warn_if_inexact(missing_rng_states(checkpoint))
        self.saved_model_epoch, self.saved_checkpoint_epoch = self.state.best_epoch, self.state.epoch
        planned = load_config(self.run_dir / CONFIG).epochs
        if self.trainer.config.epochs != planned:
            self._extend(planned)
        self.reporter.message(f"resuming {self.run_dir} after epoch {self.state.epoch}")

    def _warn_if_inexact(self, missing: list[str]) -> None:
        if missing:
            log.warning("%s has no random-number-generator state (%s): resuming anyway, but the "
                        "data order and augmentation from epoch %d on will differ from an "
                        "uninterrupted run's, so its results will not be identical",
                        self.run_dir / CHECKPOINT, ", ".join(missing), self.state.epoch + 1)

    def _extend(self, planned: int) -> None:
        """--resume with other --epochs: the epochs left get a schedule of their own (a new
        one-cycle from the same peak, as fastai's repeated fit_one_cycle); config.yaml records the
        new total."""
        trainer, done = self.trainer, self.state.epoch
        if trainer.config.epochs <= done:
            raise CnnlabError(f"{self.run_dir} has trained {done} epochs; --epochs must be more "
                              f"than that to extend it")
        left = dataclasses.replace(trainer.config, epochs=trainer.config.epochs - done)
        trainer.scheduler = make_scheduler(trainer.optimizer, left, trainer.steps_per_epoch)
        if trainer.ranks.is_main:
            atomic_write_text(self.run_dir / CONFIG, trainer.config.to_yaml())
        self.reporter.message(f"{planned} epochs planned, {trainer.config.epochs} asked: the "
                              f"{left.epochs} epochs left get a learning-rate schedule of their own")

    @property
    def has_validation_score(self) -> bool:
        return bool(self.state.history) and self.state.history[-1].has_validation

    def what_is_kept(self) -> str:
        if not self.saved_checkpoint_epoch and self.saved_model_epoch:
            return (f"kept in {self.run_dir}: the best model (epoch {self.saved_model_epoch}), "
                    f"but no checkpoint yet (a resume starts over)")
        if not self.saved_checkpoint_epoch:
            return f"nothing was saved in {self.run_dir}"
        return (f"kept in {self.run_dir}: the best model (epoch {self.saved_model_epoch}) and the "
                f"checkpoint of epoch {self.saved_checkpoint_epoch}")
