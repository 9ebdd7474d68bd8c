"""What --resume needs to continue a run exactly: the checkpoint's content, written and restored.

Reading and writing the file itself (atomically, and with weights_only=True on load) is the run
folder's job (runfolder.save_checkpoint, runfolder.load_checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from ..errors import CnnlabError

if TYPE_CHECKING:
    from .loop import Trainer


@dataclass
class TrainState:
    """Everything besides the tensors that resume needs to continue exactly."""

    epoch: int = 0
    # what picks the best epoch: its validation accuracy, or without a validation split its
    # training accuracy (so not named val_*)
    best_score: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)



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
        "state": vars(state),
    }


def restore(trainer: Trainer, checkpoint: dict) -> TrainState:
    """Put a checkpoint back into the trainer; returns the bookkeeping to continue from."""
    try:
        trainer.model.load_state_dict(checkpoint["model"])
        if trainer.ema is not None and checkpoint.get("ema"):  # else its first update copies
            trainer.ema.load_state_dict(checkpoint["ema"])
        trainer.optimizer.load_state_dict(checkpoint["optimizer"])
        trainer.scheduler.load_state_dict(checkpoint["scheduler"])
        if trainer.scaler and checkpoint["scaler"]:
            trainer.scaler.load_state_dict(checkpoint["scaler"])
        trainer.generator.set_state(checkpoint["generator"])
        torch.set_rng_state(checkpoint["torch_rng"])
        if checkpoint["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])
        state = dict(checkpoint["state"])
        if "best_val_acc" in state:  # checkpoints written before the field was renamed
            state["best_score"] = state.pop("best_val_acc")
        return TrainState(**state)
    except (KeyError, RuntimeError, ValueError, TypeError) as error:
        raise CnnlabError(f"the checkpoint does not fit this run's model or settings: "
                          f"{str(error).splitlines()[0][:200]}") from None
