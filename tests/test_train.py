"""Training: the files it writes, determinism, safe loading, a run that diverges keeping only finite
weights, resume (exact after SIGKILL, with more epochs, on another device, from a checkpoint
without RNG state) and Ctrl-C saying what was kept."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import cnnlab
from cnnlab.base.errors import CnnlabError
from cnnlab.cli import main
from cnnlab.config import TrainConfig, load_config, preset_names
from cnnlab.run import folder
from cnnlab.run.folder import load_checkpoint, save_checkpoint

from .helpers import error_line as _one_error_line
from .helpers import read_rows
from .helpers import run_cnnlab as _cli

RUN_FILES = {"config.yaml", "metrics.csv", "curves.png", "model.safetensors", "model.json",
             "last.ckpt"}


def _rows(run: Path) -> list[dict]:
    return read_rows(run / "metrics.csv")


def test_run_folder_has_every_file(digits_run):
    assert {p.name for p in digits_run.path.iterdir()} >= RUN_FILES
    assert not [p for p in digits_run.path.iterdir() if p.name.endswith(".tmp")]
    rows = _rows(digits_run.path)
    assert [int(r["epoch"]) for r in rows] == list(range(1, 11))
    assert set(rows[0]) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr",
                            "seconds"}
    assert digits_run.test_accuracy > 0.8  # digits is easy: a broken loop would sit near 10%
    card = cnnlab.load(digits_run.path).card
    assert card.class_names == tuple(str(d) for d in range(10))
    assert card.input.shape == (1, 8, 8)
    assert len(card.preprocessing.mean) == 1
    assert card.epoch == digits_run.best_epoch


def test_loaded_model_predicts_like_the_trained_one(digits_run):
    model = cnnlab.load(digits_run.path)
    from cnnlab.config import DataConfig
    from cnnlab.data import load_dataset

    test = load_dataset(DataConfig(name="digits")).test
    images, labels = test.images[:64], test.labels[:64]
    results = model.predict([img.float() / 255 for img in images], topk=3)
    accuracy = sum(r[0].index == int(y) for r, y in zip(results, labels, strict=True)) / len(labels)
    assert accuracy > 0.8
    assert all(len(r) == 3 and r[0].probability >= r[1].probability for r in results)
    # a NumPy array and a PIL image of the same picture give the same answer
    from PIL import Image

    array = images[0, 0].numpy()
    a = model.predict(array, topk=1)[0][0]
    b = model.predict(Image.fromarray(array), topk=1)[0][0]
    assert a.index == b.index and abs(a.probability - b.probability) < 1e-6


def _final_weights(run: Path) -> dict:
    return load_checkpoint(run / "last.ckpt")["model"]


def test_seeded_cpu_training_is_deterministic(tmp_path):
    runs = [cnnlab.train(data="digits", epochs=2, out=str(tmp_path / f"r{i}"), quiet=True,
                         augment={"rotation": 10, "erasing": 0.5}) for i in range(2)]
    a, b = (_final_weights(r.path) for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = cnnlab.train(data="digits", epochs=2, seed=1, out=str(tmp_path / "r3"), quiet=True)
    c = _final_weights(other.path)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def _train_command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cnnlab", "train", "--data", "digits", "--model", "vgg-small",
            "--batch-size", "16", "--epochs", "6", "--out", str(out), "--quiet", *extra]


def _epochs_done(run: Path) -> int:
    try:
        return len((run / "metrics.csv").read_text().splitlines()) - 1
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_resume_after_sigkill_is_bit_identical(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "reference"
    subprocess.run(_train_command(reference, "--threads", "1"), check=True, env=env)

    killed = tmp_path / "killed"
    process = subprocess.Popen(_train_command(killed, "--threads", "1"), env=env)
    deadline = time.time() + 300
    while _epochs_done(killed) < 2 and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert process.poll() is None, "training finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 2 <= _epochs_done(killed) < 6
    # every file that was there is whole: the run folder loads as it stands
    load_checkpoint(killed / "last.ckpt")
    cnnlab.load(killed)

    subprocess.run([sys.executable, "-m", "cnnlab", "train", "--resume", str(killed), "--quiet"],
                   check=True, env=env)
    a, b = _final_weights(reference), _final_weights(killed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    averages = [load_checkpoint(run / "last.ckpt")["ema"] for run in (reference, killed)]
    assert averages[0] and all(torch.equal(averages[0][k], averages[1][k]) for k in averages[0])
    assert load_file(reference / "model.safetensors").keys() == \
        load_file(killed / "model.safetensors").keys()
    def without_time(rows):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]

    assert without_time(_rows(reference)) == without_time(_rows(killed))


def test_the_weight_average_is_what_is_saved(tmp_path):
    """From scratch, the model saved (and validated) is the moving average of the weights; with
    --ema 0 it is the weights themselves."""
    for decay in (None, 0.0):
        run = cnnlab.train(data="digits", epochs=1, ema=decay, out=str(tmp_path / f"r{decay}"),
                           quiet=True)  # one epoch: the saved epoch is the last
        checkpoint = load_checkpoint(run.path / "last.ckpt")
        saved = load_file(run.path / "model.safetensors")
        trained = checkpoint["model"]
        if decay is None:
            assert run.config.ema == 0.99
            average = {k.removeprefix("module."): v for k, v in checkpoint["ema"].items()}
            assert all(torch.equal(saved[k], average[k]) for k in saved)
            assert not all(torch.equal(saved[k], trained[k]) for k in saved)
        else:
            assert checkpoint["ema"] == {}
            assert all(torch.equal(saved[k], trained[k]) for k in saved)


def test_the_average_spans_a_tenth_of_the_steps_until_its_decay():
    from cnnlab.train.average import ema_update

    update = ema_update(0.99)
    for n, expected in ((0, 0.1), (10, 0.55), (1000, 0.99)):
        averaged, current = [torch.zeros(3)], [torch.ones(3)]
        update(averaged, current, torch.tensor(n))
        # lerp by 1 - decay: the average moves (1 - decay) of the way to the weights
        assert torch.allclose(averaged[0], torch.full((3,), 1 - expected))
    # past its ramp, the update is torch's own EMA
    ours, theirs = [torch.rand(5)], [torch.rand(5)]
    theirs[0].copy_(ours[0])
    current = [torch.rand(5)]
    update(ours, current, torch.tensor(10_000))
    torch.optim.swa_utils.get_ema_multi_avg_fn(0.99)(theirs, current, torch.tensor(10_000))
    assert torch.equal(ours[0], theirs[0])
    counters = [torch.tensor(3)]
    update(counters, [torch.tensor(7)], torch.tensor(5))
    assert counters[0].item() == 7


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-checkpoint",))


def test_checkpoint_with_code_is_refused_and_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "last.ckpt"
    with open(path, "wb") as handle:
        pickle.dump({"model": _Exploit()}, handle)
    torch.save({"model": _Exploit()}, tmp_path / "zip.ckpt")
    for candidate in (path, tmp_path / "zip.ckpt"):
        with pytest.raises(CnnlabError, match="refusing to load .* could run code"):
            load_checkpoint(candidate)
    assert not (tmp_path / "pwned-by-checkpoint").exists()


def test_nan_loss_stops_and_keeps_the_last_good_model(tmp_path):
    run = cnnlab.train(data="digits", model="conv(8) relu flatten dense", epochs=4, lr=1e30,
                       optimizer="sgd", schedule="none", out=str(tmp_path / "nan"), quiet=True)
    assert run.status == "diverged"
    if (run.path / "model.safetensors").exists():  # a good epoch before the blow-up is kept
        weights = load_file(run.path / "model.safetensors")
        assert all(torch.isfinite(v).all() for v in weights.values())


def test_early_stopping(tmp_path):
    run = cnnlab.train(data="digits", epochs=30, lr=1e-9, optimizer="sgd", schedule="none",
                       patience=2, out=str(tmp_path / "patient"), quiet=True)
    assert run.status == "stopped early"
    assert len(run.history) < 30


def test_run_names_never_overwrite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = cnnlab.train(data="digits", epochs=1, quiet=True)
    second = cnnlab.train(data="digits", epochs=1, quiet=True)
    assert first.path == Path("runs/digits-fast")
    assert second.path == Path("runs/digits-fast-2")


def test_config_file_with_overrides(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("model: vgg-small\nepochs: 1\ndata:\n  name: digits\n  val_fraction: 0.2\n")
    run = cnnlab.train(config, out=str(tmp_path / "from-yaml"), quiet=True, epochs=2)
    saved = (run.path / "config.yaml").read_text()
    assert "model: vgg-small" in saved and "epochs: 2" in saved and "val_fraction: 0.2" in saved
    assert len(run.history) == 2


def test_presets_are_configs_by_name(tmp_path):
    assert "fashion-long" in preset_names()
    config = load_config("fashion-long")
    assert config.model == "fast-deep" and config.augment.crop_padding > 0
    run = cnnlab.train("fashion-long", data="digits", epochs=1, out=str(tmp_path / "p"), quiet=True,
                       augment={"crop_padding": 1})
    assert "model: fast-deep" in (run.path / "config.yaml").read_text()
    with pytest.raises(CnnlabError, match=r"did you mean 'fashion-long'"):
        load_config("fashion-lng")


def test_unknown_setting_in_config_is_an_error(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("epoch: 3\n")
    with pytest.raises(CnnlabError, match=r"unknown setting 'epoch' \(did you mean 'epochs'\?\)"):
        cnnlab.train(config)


def test_folder_training_streams_and_learns(tmp_path):
    from .helpers import make_folder

    make_folder(tmp_path / "shapes", per_class=40)
    run = cnnlab.train(
        data={"name": str(tmp_path / "shapes"), "stream": True, "workers": 2, "val_fraction": 0.25},
        model="conv(16, k=3, p=same) bn relu maxpool(2) conv(16) relu gap dense",
        epochs=10, batch_size=8, lr=1e-2, out=str(tmp_path / "r"), quiet=True)
    assert run.best_val_accuracy >= 0.9  # squares against bars: easy for any working CNN


@pytest.mark.parametrize("total_steps", [1, 2, 3, 5, 10, 37])
def test_one_cycle_rises_once_and_falls_for_any_number_of_steps(total_steps):
    from cnnlab.config import TrainConfig
    from cnnlab.models import create_model
    from cnnlab.train.optim import make_optimizer, make_scheduler

    config = TrainConfig(epochs=total_steps, optimizer="adam", lr=1.0, warmup=0.1)
    model, _, _ = create_model("flatten dense", input_shape=(1, 2, 1), num_classes=2)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch=1)  # 10: one warmup step
    rates = []
    for _ in range(total_steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    peak = rates.index(max(rates))
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1:], strict=False))  # no restart
    if total_steps >= 3:
        assert rates[0] < max(rates) / 2  # it warms up instead of starting at its peak


def test_a_small_folder_gets_a_batch_it_can_learn_from(tmp_path, caplog):
    from .helpers import make_shape_folder

    make_shape_folder(tmp_path / "shapes", per_class=40)
    run = cnnlab.train(data=str(tmp_path / "shapes"), model="simple", epochs=10,
                       out=str(tmp_path / "r"), quiet=True)
    assert "using 16 instead" in caplog.text and "optimizer step(s) per epoch" in caplog.text
    assert load_config(run.path / "config.yaml").batch_size == 16  # what --resume will use
    # at the old batch of 128 (one step per epoch) this run ended at 58% on validation
    assert run.best_val_accuracy >= 0.8


def test_validation_is_held_out_per_class_and_class_sizes_are_said(tmp_path, caplog, capsys):
    from cnnlab.data.splits import TensorImages, split_off

    from .helpers import make_shape_folder

    labels = torch.tensor([0] * 60 + [1] * 60 + [2] * 12)
    images = torch.zeros((len(labels), 1, 2, 2), dtype=torch.uint8)
    train, val = split_off(TensorImages(images, labels), 0.1, seed=0)
    assert torch.bincount(val.labels).tolist() == [6, 6, 1]
    assert torch.bincount(train.labels).tolist() == [54, 54, 11]
    make_shape_folder(tmp_path / "uneven", per_class=40)
    for extra in sorted((tmp_path / "uneven" / "disc").iterdir())[8:]:
        extra.unlink()
    cnnlab.train(data=str(tmp_path / "uneven"), model="conv(4) relu flatten dense", epochs=1,
                 out=str(tmp_path / "r"))
    assert "training images per class: cross 36, disc 7, square 36" in capsys.readouterr().err
    assert "the classes are imbalanced: disc has 7" in caplog.text
    assert "--class-weights" in caplog.text


def test_without_a_validation_split_nothing_val_holds_training_accuracy(tmp_path):
    run = cnnlab.train(data={"name": "digits", "val_fraction": 0}, epochs=2,
                       model="conv(4) relu flatten dense", out=str(tmp_path / "noval"), quiet=True)
    assert run.best_val_accuracy is None and run.best_epoch == 2
    card = cnnlab.load(run.path).card
    assert card.val_accuracy is None and card.epoch == 2
    assert all(row["val_acc"] == "nan" for row in read_rows(run.path / "metrics.csv"))


DIVERGING = ["train", "--data", "digits", "--model", "simple", "--epochs", "3", "--optimizer", "sgd",
             "--schedule", "none", "--batch-size", "2000"]


def test_a_run_diverging_in_its_first_epoch_saves_no_model_and_says_so(tmp_path):
    out = tmp_path / "nan"
    result = _cli(*DIVERGING, "--lr", "1e30", "--out", str(out))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "the validation loss became nan at epoch 1. No model was saved" in result.stderr
    assert not (out / "model.safetensors").exists() and not (out / "last.ckpt").exists()


def test_a_run_diverging_later_keeps_only_its_last_finite_model(tmp_path):
    out = tmp_path / "late"
    result = _cli(*DIVERGING, "--lr", "1e9", "--out", str(out))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "The best model so far (epoch 1) is kept" in result.stderr
    state = load_file(out / "model.safetensors")
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert cnnlab.load(out).predict(np.zeros((8, 8), np.uint8))[0][0].probability > 0


def test_infinite_batch_norm_statistics_are_not_saved_nor_resumed(tmp_path, capsys):
    out = tmp_path / "bn"
    args = ["train", "--data", "digits", "--model", "simple", "--epochs", "1", "--image-size", "8",
            "--lr", "50", "--optimizer", "sgd", "--ema", "0", "--out", str(out), "--quiet"]
    main(args)
    assert json.loads((out / "results.json").read_text())["status"] == "diverged"
    for name in ("model.safetensors", "last.ckpt"):
        if (out / name).exists():
            state = load_file(out / name) if name.endswith("safetensors") else \
                folder.load_checkpoint(out / name)["model"]
            assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    main(["train", "--resume", str(out), "--quiet"])
    assert json.loads((out / "results.json").read_text())["status"] == "diverged"
    assert not (out / "model.safetensors").exists() and not (out / "last.ckpt").exists()


def test_resume_removes_what_a_killed_write_left_behind(run_copy):
    leftover = run_copy / ".curves.png.abc123.tmp"
    leftover.write_bytes(b"half a picture")
    assert _cli("train", "--resume", str(run_copy), "--quiet").returncode == 0
    assert not leftover.exists()


def test_a_run_killed_before_its_first_checkpoint_starts_over_in_place(tmp_path):
    folder = tmp_path / "early"
    folder.mkdir()
    config = TrainConfig(epochs=1, out=str(folder))
    config.data.name = "digits"
    (folder / "config.yaml").write_text(config.to_yaml())
    result = _cli("train", "--resume", str(folder))
    assert result.returncode == 0, result.stderr
    assert "starting it over in the same folder" in result.stdout + result.stderr
    assert (folder / "model.safetensors").is_file() and (folder / "last.ckpt").is_file()


def test_resume_with_more_epochs_extends_a_finished_run(run_copy):
    done = len(read_rows(run_copy / "metrics.csv"))
    result = _cli("train", "--resume", str(run_copy), "--epochs", str(done + 2))
    assert result.returncode == 0, result.stderr
    rows = read_rows(run_copy / "metrics.csv")
    assert len(rows) == done + 2 and load_config(run_copy / "config.yaml").epochs == done + 2
    rates = [float(row["lr"]) for row in rows[done:]]
    assert rates[0] > 1e-4 and rates[-1] < rates[0]  # a schedule of their own, annealed again


def test_a_run_recorded_on_a_gpu_resumes_on_the_cpu_when_asked(run_copy):
    config = run_copy / "config.yaml"
    config.write_text(config.read_text().replace("device: cpu", "device: cuda"))
    done = len(read_rows(run_copy / "metrics.csv"))
    refused = _cli("train", "--resume", str(run_copy), "--epochs", str(done + 1))
    assert refused.returncode == 2 and "--device cpu" in refused.stderr
    result = _cli("train", "--resume", str(run_copy), "--epochs", str(done + 1), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert len(read_rows(run_copy / "metrics.csv")) == done + 1


def _rewrite_checkpoint(run: Path, drop: tuple[str, ...]) -> None:
    checkpoint = load_checkpoint(run / "last.ckpt")
    save_checkpoint(run / "last.ckpt", {k: v for k, v in checkpoint.items() if k not in drop})


def test_a_checkpoint_without_rng_state_resumes_with_a_warning(run_copy):
    _rewrite_checkpoint(run_copy, drop=("generator", "torch_rng", "cuda_rng"))
    result = _cli("train", "--resume", str(run_copy), "--epochs", "11", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "has no random-number-generator state (generator, torch_rng)" in result.stderr
    assert "data order and augmentation from epoch 11 on will differ" in result.stderr
    assert load_checkpoint(run_copy / "last.ckpt")["state"]["epoch"] == 11
    assert "generator" in load_checkpoint(run_copy / "last.ckpt")  # written whole again


def test_a_checkpoint_without_the_optimizer_names_what_is_missing(run_copy, capsys):
    _rewrite_checkpoint(run_copy, drop=("optimizer",))
    assert main(["train", "--resume", str(run_copy), "--epochs", "11"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "the checkpoint lacks 'optimizer' (the optimizer's state)" in line


def test_ctrl_c_says_what_was_kept_and_how_to_go_on(tmp_path):
    out = tmp_path / "stopped"
    process = subprocess.Popen([sys.executable, "-m", "cnnlab", "train", "--data", "digits",
                                "--model", "simple", "--epochs", "500", "--out", str(out)],
                               stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               # a shell's background job ignores SIGINT; a terminal's does not
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in process.stderr:
        if line.startswith("epoch 2/"):
            break
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "interrupted: kept in" in err and f"cnnlab train --resume {out}" in err
    assert "Traceback" not in err
