"""Where a run is logged besides its own folder: TensorBoard event files in the run folder (by
default) and MLflow (--mlflow). Each tracker hears of every epoch and of the end of training; only
the process that writes the run folder logs."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..base.errors import CnnlabError
from ..base.fileio import atomic_write_json
from ..config import TrainConfig
from ..config.training import LOCAL_MLFLOW
from ..run.folder import CONFIG, META, METRICS, WEIGHTS
from ..run.results import EpochRow, TrainingResults

MLFLOW_RUN = "mlflow.json"  # the MLflow run this folder logs to, so --resume continues it
EXPERIMENT = "cnnlab"


def flat_settings(config: TrainConfig) -> dict[str, Any]:
    """Every setting as one flat mapping (data.image_size, augment.flip, ...), for hparams."""
    flat = {}
    for key, value in config.to_dict().items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for inner, item in items:
            flat[f"{key}.{inner}" if inner else key] = "none" if item is None else item
    return flat


def _epoch_scalars(row: EpochRow) -> dict[str, float]:
    """An epoch's figures under the names both trackers use (those it has)."""
    named = {"loss/train": row.train_loss, "accuracy/train": row.train_acc,
             "loss/val": row.val_loss, "accuracy/val": row.val_acc,
             "accuracy/val_robust": row.val_robust_acc, "lr": row.lr, "seconds": row.seconds}
    return {name: value for name, value in named.items() if value is not None}


class TensorBoardTracker:
    """Scalars per epoch, the curves and confusion matrix as images at the end, and the settings
    with the final metrics as hparams, in RUN/events.out.tfevents.*."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir))

    def epoch(self, row: EpochRow) -> None:
        for name, value in _epoch_scalars(row).items():
            self.writer.add_scalar(name, value, row.epoch)
        self.writer.flush()

    def finish(self, config: TrainConfig, results: TrainingResults, figures: dict[str, Path]) -> None:
        for name, path in figures.items():
            if path.is_file():
                self.writer.add_image(name, _image(path), results.epochs, dataformats="HWC")
        final = {"hparam/best_val_accuracy": results.best_val_accuracy,
                 "hparam/test_accuracy": results.test_accuracy}
        self.writer.add_hparams(flat_settings(config),
                                {k: v for k, v in final.items() if v is not None}, run_name=".")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))  # (H, W, 3) uint8


class MlflowTracker:
    """The settings as params, every epoch's metrics, and the model card, weights, config, metrics
    and figures as artifacts. The run's id is kept in RUN/mlflow.json, so --resume logs on into
    the same MLflow run."""

    def __init__(self, run_dir: Path, uri: str) -> None:
        import mlflow

        for name in ("mlflow", "alembic"):  # their set-up notes would flood the training output
            logging.getLogger(name).setLevel(logging.WARNING)
        self.run_dir, self.mlflow, self.uri = run_dir, mlflow, uri
        self.client = mlflow.MlflowClient(tracking_uri=_tracking_uri(run_dir, uri))
        self.run_id = self._run_id(uri)

    def _run_id(self, uri: str) -> str:
        kept = self.run_dir / MLFLOW_RUN
        if kept.is_file():
            return json.loads(kept.read_text(encoding="utf-8"))["run_id"]
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        experiment_id = experiment.experiment_id if experiment else \
            self.client.create_experiment(EXPERIMENT, artifact_location=_artifacts(run_dir=self.run_dir,
                                                                                   uri=uri))
        run_id = self.client.create_run(experiment_id, run_name=self.run_dir.name).info.run_id
        atomic_write_json(kept, {"run_id": run_id, "tracking_uri": uri})
        return run_id

    def start(self, config: TrainConfig) -> None:
        params = {key: str(value)[:500] for key, value in flat_settings(config).items()}
        logged = self.client.get_run(self.run_id).data.params
        # a resumed run logs only what it has not (MLflow refuses a param logged with another value)
        fresh = [self.mlflow.entities.Param(key, value) for key, value in params.items()
                 if key not in logged]
        if fresh:
            self.client.log_batch(self.run_id, params=fresh)

    def epoch(self, row: EpochRow) -> None:
        metrics = [self.mlflow.entities.Metric(name.replace("/", "_"), float(value), 0, row.epoch)
                   for name, value in _epoch_scalars(row).items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, config: TrainConfig, results: TrainingResults, figures: dict[str, Path]) -> None:
        files = [self.run_dir / name for name in (META, WEIGHTS, CONFIG, METRICS)]
        for path in [*files, *figures.values()]:
            if path.is_file():
                self.client.log_artifact(self.run_id, str(path))
        for key, value in (("best_val_accuracy", results.best_val_accuracy),
                           ("test_accuracy", results.test_accuracy)):
            if value is not None:
                self.client.log_metric(self.run_id, key, value)
        self.client.set_tag(self.run_id, "status", results.status)
        self.client.set_terminated(self.run_id, "FAILED" if results.status == "diverged" else
                                   "FINISHED")

    def close(self) -> None:
        """Nothing to release: every call above went to the store as it was made."""


def _tracking_uri(run_dir: Path, uri: str) -> str:
    """--mlflow alone: a local store beside the run folders, runs/mlflow.db for runs/NAME (SQLite:
    MLflow's file store is no longer maintained); `mlflow ui --backend-store-uri` opens it."""
    if uri != LOCAL_MLFLOW:
        return uri
    return f"sqlite:///{run_dir.resolve().parent / 'mlflow.db'}"


def _artifacts(run_dir: Path, uri: str) -> str | None:
    """The local store keeps its artifacts in runs/mlruns/; a server keeps its own."""
    return (run_dir.resolve().parent / "mlruns").as_uri() if uri == LOCAL_MLFLOW else None


def open_trackers(config: TrainConfig, run_dir: Path) -> list:
    """The trackers the settings ask for, started."""
    trackers: list = []
    if config.log == "tensorboard":
        trackers.append(TensorBoardTracker(run_dir))
    if config.mlflow:
        try:
            tracker = MlflowTracker(run_dir, config.mlflow)
            tracker.start(config)
        except ImportError:
            raise CnnlabError("--mlflow needs MLflow: pip install mlflow") from None
        except Exception as error:  # the store unreachable or refusing: said before any epoch
            raise CnnlabError(f"cannot log to MLflow at {config.mlflow}: "
                              f"{str(error).splitlines()[0][:200]}") from None
        trackers.append(tracker)
    return trackers
