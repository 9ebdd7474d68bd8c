"""What --resume needs to continue a run exactly: the checkpoint's content, written and restored.

Reading and writing the file itself (atomically, and with weights_only=True on load) is the run
folder's job (run.folder.save_checkpoint, run.folder.load_checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..base.errors import CnnlabError
from ..run.results import EpochRow
from .trainer import Trainer


@dataclass
class TrainState:
    """Everything besides the tensors that resume needs to continue exactly."""

    epoch: int = 0
    # what picks the best epoch: its validation accuracy, or without a validation split its
    # training accuracy (so not named val_*)
    best_score: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[EpochRow] = field(default_factory=list)

    def record(self, row: EpochRow) -> bool:
        """Count an epoch in; returns whether it is the best so far.

        A tie goes to the later epoch: on a small validation split that every epoch gets right,
        the first such epoch would win, while the annealed weights of the last generalize best
        (flowers12 fine-tuning: 96.67% test from epoch 1, 97.50% from epoch 6, all at 100% val).
        Early stopping waits for a strictly better score."""
        self.history.append(row)
        self.epoch = row.epoch
        self.bad_epochs = 0 if row.score > self.best_score else self.bad_epochs + 1
        best = row.score >= self.best_score
        if best:
            self.best_score, self.best_epoch = row.score, row.epoch
        return best

    def to_dict(self) -> dict:
        """Plain data for last.ckpt (loadable with weights_only=True)."""
        return {"epoch": self.epoch, "best_score": self.best_score, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "history": [row.to_dict() for row in self.history]}

    @classmethod
    def from_dict(cls, values: dict) -> TrainState:
        values = dict(values)
        if "best_val_acc" in values:  # checkpoints written before the field was renamed
            values["best_score"] = values.pop("best_val_acc")
        values["history"] = [EpochRow.from_dict(row) for row in values.get("history", [])]
        return cls(**values)


def checkpoint_of(trainer: Trainer, state: TrainState) -> dict:
    """What last.ckpt holds: a dict of state dicts and RNG states (plain data, loadable with
    weights_only=True)."""
    return {
        "model": trainer.model.state_dict(),
        "ema": trainer.ema.state_dict() if trainer.ema is not None else {},
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "scaler": trainer.scaler.state_dict() if trainer.scaler else {},
        "generator": trainer.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "state": state.to_dict(),
    }


# What a checkpoint must hold to resume at all, as the error names them.
REQUIRED = {"model": "the model's weights", "optimizer": "the optimizer's state",
            "scheduler": "the learning-rate schedule's state", "state": "the epoch and history"}
# What resuming exactly needs besides: the data order and the augmentation draw from these.
RNG_STATES = ("generator", "torch_rng")


def missing_rng_states(checkpoint: dict) -> list[str]:
    """The random-number-generator states a checkpoint lacks (a checkpoint written by hand or by
    another tool): without them a resume continues, but not as the uninterrupted run would."""
    return [key for key in RNG_STATES if key not in checkpoint]


def restore(trainer: Trainer, checkpoint: dict) -> TrainState:
    """Put a checkpoint back into the trainer; returns the bookkeeping to continue from. The RNG
    states are restored where the checkpoint has them (see missing_rng_states)."""
    if not isinstance(checkpoint, dict):
        raise CnnlabError(f"the checkpoint holds a {type(checkpoint).__name__}, not the dict of "
                          f"states cnnlab writes; start a new run")
    missing = [f"{key!r} ({what})" for key, what in REQUIRED.items() if key not in checkpoint]
    if missing:
        raise CnnlabError(f"the checkpoint lacks {', '.join(missing)}, so training cannot "
                          f"continue from it; start a new run")
    try:
        trainer.model.load_state_dict(checkpoint["model"])
        if trainer.ema is not None and checkpoint.get("ema"):  # else its first update copies
            trainer.ema.load_state_dict(checkpoint["ema"])
        trainer.optimizer.load_state_dict(checkpoint["optimizer"])
        trainer.scheduler.load_state_dict(checkpoint["scheduler"])
        if trainer.scaler and checkpoint.get("scaler"):
            trainer.scaler.load_state_dict(checkpoint["scaler"])
        _restore_rng(trainer, checkpoint)
        return TrainState.from_dict(checkpoint["state"])
    except (KeyError, RuntimeError, ValueError, TypeError) as error:
        raise CnnlabError(f"the checkpoint does not fit this run's model or settings: "
                          f"{str(error).splitlines()[0][:200]}") from None


def _restore_rng(trainer: Trainer, checkpoint: dict) -> None:
    if "generator" in checkpoint:
        trainer.generator.set_state(checkpoint["generator"])
    if "torch_rng" in checkpoint:
        torch.set_rng_state(checkpoint["torch_rng"])
    if checkpoint.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])
