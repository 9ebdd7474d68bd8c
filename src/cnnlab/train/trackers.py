"""Where a run is logged besides its own folder: TensorBoard event files in the run folder (by
default) and MLflow (--mlflow). Each tracker hears of every epoch and of the end of training; only
the process that writes the run folder logs."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
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
# The first look at the MLflow store is one try of this many seconds: MLflow's own default, seven
# retries with a growing wait, spends four minutes on a server that is not there.
PROBE_SECONDS = 10
PROBE_ENVIRONMENT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
                     "MLFLOW_HTTP_REQUEST_TIMEOUT": str(PROBE_SECONDS)}


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

        _quiet_mlflow_logs()
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
    return _store_uri(run_dir.resolve().parent, uri)


def _store_uri(runs: Path, uri: str) -> str:
    """The tracking URI for runs in the folder `runs`."""
    return f"sqlite:///{_local_store(runs.resolve())}" if uri == LOCAL_MLFLOW else uri


def _local_store(runs: Path) -> Path:
    return runs / "mlflow.db"


def _artifacts(run_dir: Path, uri: str) -> str | None:
    """The local store keeps its artifacts in runs/mlruns/; a server keeps its own."""
    return (run_dir.resolve().parent / "mlruns").as_uri() if uri == LOCAL_MLFLOW else None


def _quiet_mlflow_logs() -> None:
    for name in ("mlflow", "alembic"):  # their set-up notes would flood the training output
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def _said_in_one_line(uri: str) -> Iterator[None]:
    """MLflow's failures (no MLflow, the store unreachable, refusing or damaged) as one line."""
    try:
        yield
    except ImportError:
        raise CnnlabError("--mlflow needs MLflow: pip install mlflow") from None
    except Exception as error:
        raise CnnlabError(f"cannot log to MLflow at {uri}: {_why(error)}") from None


def _why(error: Exception) -> str:
    """What went wrong, short: MLflow's HTTP errors bury the reason deep in a long line."""
    text = str(error).strip()
    if isinstance(error, KeyError) or not text:  # a damaged store's KeyError names only the key
        return f"{type(error).__name__} {text}".strip()
    refused = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if refused:
        return f"no answer from the tracking server ({refused[1].strip()})"
    if "timed out" in text:
        return "no answer from the tracking server (timed out)"
    return text.splitlines()[0][:200]


@contextmanager
def _one_short_try() -> Iterator[None]:
    """MLflow's HTTP client without retries and with a short timeout, for the time of the block
    (MLflow reads these variables at each request)."""
    before = {name: os.environ.get(name) for name in PROBE_ENVIRONMENT}
    os.environ.update(PROBE_ENVIRONMENT)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def check_trackers(config: TrainConfig, resume: str | Path | None = None) -> None:
    """Fail in one line, before a run folder is made, when the MLflow store --mlflow names cannot
    be reached or read: one short look at it instead of minutes of retries on the first epoch."""
    if not config.mlflow:
        return
    runs = Path(resume).parent if resume is not None else (
        Path(config.out).parent if config.out else Path("runs"))
    if config.mlflow == LOCAL_MLFLOW and not _local_store(runs).is_file():
        return  # made with the run: nothing there yet to be damaged
    with _said_in_one_line(config.mlflow), _one_short_try():
        import mlflow

        _quiet_mlflow_logs()
        client = mlflow.MlflowClient(tracking_uri=_store_uri(runs, config.mlflow))
        client.get_experiment_by_name(EXPERIMENT)


def open_trackers(config: TrainConfig, run_dir: Path) -> list:
    """The trackers the settings ask for, started."""
    trackers: list = []
    if config.log == "tensorboard":
        trackers.append(TensorBoardTracker(run_dir))
    if config.mlflow:
        with _said_in_one_line(config.mlflow):  # the store refusing: said before any epoch
            tracker = MlflowTracker(run_dir, config.mlflow)
            tracker.start(config)
        trackers.append(tracker)
    return trackers
