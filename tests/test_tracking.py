"""Runs logged where people look: TensorBoard event files read back with TensorBoard's own
EventAccumulator, MLflow runs read back with MlflowClient, from a local store and from a real
`mlflow server` process."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import cnnlab
from cnnlab.cli import main
from cnnlab.run.folder import read_metrics

from .helpers import captured_error_line, error_line, free_port

TINY = {"data": "digits", "model": "lenet5", "image_size": 16, "quiet": True}


def _scalars(folder: Path) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    return events


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    return cnnlab.train(epochs=2, out=str(tmp_path_factory.mktemp("tb") / "run"), **TINY)


def test_tensorboard_holds_every_epoch_as_metrics_csv_has_it(logged_run):
    events = _scalars(logged_run.path)
    rows = read_metrics(logged_run.path)
    for tag, field in (("loss/train", "train_loss"), ("accuracy/val", "val_acc"), ("lr", "lr")):
        logged = [(event.step, event.value) for event in events.Scalars(tag)]
        assert logged == [(row.epoch, pytest.approx(getattr(row, field), rel=1e-6)) for row in rows]
    assert {"curves", "confusion_matrix"} <= set(events.Tags()["images"])


def test_tensorboard_hparams_carry_the_settings_and_the_final_metrics(logged_run):
    events = _scalars(logged_run.path)
    final = [event.value for event in events.Scalars("hparam/test_accuracy")]
    assert final == [pytest.approx(logged_run.test_accuracy, abs=1e-6)]
    plugin = events.PluginTagToContent("hparams")
    assert any(b"lr" in content and b"model" in content for content in plugin.values())


def test_log_none_writes_no_event_files(tmp_path):
    run = cnnlab.train(epochs=1, log="none", out=str(tmp_path / "run"), **TINY)
    assert not list(run.path.glob("events.out.tfevents.*"))
    assert (run.path / "metrics.csv").is_file()


def _mlflow_run(client, run_dir: Path):
    return client.get_run(json.loads((run_dir / "mlflow.json").read_text())["run_id"])


def test_mlflow_local_store_gets_params_metrics_and_artifacts_and_resume_continues_it(tmp_path):
    from mlflow import MlflowClient

    run = cnnlab.train(epochs=2, mlflow="local", out=str(tmp_path / "runs" / "a"), **TINY)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    logged = _mlflow_run(client, run.path)
    assert logged.info.status == "FINISHED" and logged.info.run_name == "a"
    assert logged.data.params["model"] == "lenet5" and logged.data.params["data.name"] == "digits"
    assert logged.data.metrics["test_accuracy"] == pytest.approx(run.test_accuracy, abs=1e-6)
    artifacts = {item.path for item in client.list_artifacts(logged.info.run_id)}
    assert {"model.json", "model.safetensors", "curves.png", "confusion_matrix.png"} <= artifacts

    cnnlab.train(resume=run.path, epochs=3, quiet=True)  # one MLflow run for the whole run folder
    history = client.get_metric_history(logged.info.run_id, "accuracy_val")
    assert [metric.step for metric in history] == [1, 2, 3]
    assert [metric.value for metric in history] == \
        pytest.approx([row.val_acc for row in read_metrics(run.path)])


@pytest.fixture
def mlflow_server(tmp_path):
    """A real MLflow tracking server on loopback, with its own database and artifact store."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", (tmp_path / "artifacts").as_uri(), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                assert server.poll() is None, "mlflow server exited"
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not answer within 180 s")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_mlflow_tracking_server_receives_the_run(tmp_path, mlflow_server):
    from mlflow import MlflowClient

    run = cnnlab.train(epochs=2, mlflow=mlflow_server, out=str(tmp_path / "runs" / "served"), **TINY)
    client = MlflowClient(tracking_uri=mlflow_server)
    logged = _mlflow_run(client, run.path)
    assert logged.info.status == "FINISHED"
    history = client.get_metric_history(logged.info.run_id, "loss_train")
    assert [metric.value for metric in history] == \
        pytest.approx([row.train_loss for row in read_metrics(run.path)])
    assert "model.json" in {item.path for item in client.list_artifacts(logged.info.run_id)}


def test_an_unreachable_mlflow_server_is_one_line_before_any_run_folder(tmp_path):
    # MLflow's own retries left as they are: seven, over four minutes, each a warning line
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("MLFLOW_HTTP_REQUEST")}
    done = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--data", "digits", "--model",
                           "lenet5", "--image-size", "16", "--epochs", "1", "--quiet",
                           "--mlflow", f"http://127.0.0.1:{free_port()}",
                           "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=150, env=environment)
    assert done.returncode == 2
    line = error_line(done.stderr)
    assert "cannot log to MLflow" in line and "Connection refused" in line
    assert not (tmp_path / "run").exists()


TRAIN_FLAGS = ["train", "--data", "digits", "--model", "simple", "--image-size", "8", "--epochs",
               "1", "--log", "none", "--quiet"]


def test_a_damaged_local_mlflow_database_is_one_line_before_any_run_folder(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "mlflow.db").write_bytes(b"not an SQLite database at all\n" * 100)
    assert main([*TRAIN_FLAGS, "--mlflow", "--out", str(runs / "a")]) == 2
    assert "cannot log to MLflow at local: " in captured_error_line(capsys)
    assert sorted(p.name for p in runs.iterdir()) == ["mlflow.db"]  # no stub run folder


def test_a_damaged_mlflow_file_store_is_one_line_before_any_run_folder(tmp_path, capsys,
                                                                       monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow's file store, kept for old ones
    store = (tmp_path / "mlruns").as_uri()
    experiment = MlflowClient(tracking_uri=store).create_experiment("cnnlab")
    (tmp_path / "mlruns" / experiment / "meta.yaml").write_text("name: [cnnlab\n")  # cut short
    assert main([*TRAIN_FLAGS, "--mlflow", store, "--out", str(tmp_path / "run")]) == 2
    assert f"cannot log to MLflow at {store}: " in captured_error_line(capsys)
    assert not (tmp_path / "run").exists()
