"""Nothing wrong is saved or reported as success, and every bad input is one clear line."""

import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import cnnlab
from cnnlab.base.config import TrainConfig
from cnnlab.base.errors import CnnlabError
from cnnlab.cli import main

from .helpers import read_rows


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnlab", *args], capture_output=True, text=True,
                          timeout=600)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def run_copy(digits_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(digits_run.path, target)
    return target


BAD_SETTINGS = [
    (["train", "--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["train", "--epochs", "-1"], "--epochs must be at least 1"),
    (["train", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["train", "--lr", "-1"], "--lr must be a number >= 0 and <= 1e+30"),
    (["train", "--lr", "nan"], "--lr must be a number >= 0 and <= 1e+30, got nan"),
    (["train", "--momentum", "5"], "--momentum must be a number >= 0 and < 1"),
    (["train", "--weight-decay", "-1"], "--weight-decay must be at least 0"),
    (["train", "--label-smoothing", "2"], "--label-smoothing must be a number >= 0 and < 1"),
    (["train", "--warmup", "2"], "--warmup must be a number >= 0 and <= 1"),
    (["train", "--crop-padding", "-1"], "--crop-padding must be at least 0"),
    (["train", "--erasing", "5"], "--erasing must be a number >= 0 and <= 1"),
    (["train", "--rotation", "nan"], "--rotation must be a number >= 0 and <= 180"),
    (["train", "--patience", "-1"], "--patience must be at least 1"),
    (["train", "--threads", "-1"], "--threads must be a number >= 1 and <= 1024"),
    (["train", "--image-size", "100000"], "--image-size must be a number >= 1 and <= 4096"),
    (["train", "--interpolation", "xyz"], "unknown interpolation 'xyz'"),
    (["evaluate", "RUN", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["evaluate", "RUN", "--max-shift", "1000"], "--max-shift must be a number >= 0 and <= 16"),
    (["attack", "RUN", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["predict", "RUN", "x.png", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["predict", "RUN", "x.png", "--topk", "-1"], "--topk must be at least 1"),
    (["explain", "RUN", "--method", "embedding", "--limit", "0"], "--limit must be at least 1"),
    (["export", "RUN", "--calibration", "0"], "--calibration must be at least 1"),
    (["serve", "RUN", "--port", "70000"], "--port must be a number >= 1 and <= 65535"),
]


@pytest.mark.parametrize(("args", "message"), BAD_SETTINGS)
def test_bad_settings_are_one_line_and_exit_2(run_copy, capsys, args, message):
    args = [str(run_copy) if a == "RUN" else a for a in args]
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


@pytest.mark.parametrize(("yaml", "message"), [
    ("epochs: ten\n", "setting epochs must be a whole number, got 'ten'"),
    ("lr: fast\n", "setting lr must be a number, got 'fast'"),
    ("data:\n  strict: 'no'\n", "setting data.strict must be true or false, got 'no'"),
])
def test_config_files_with_wrong_types_are_refused(tmp_path, capsys, yaml, message):
    config = tmp_path / "run.yaml"
    config.write_text(yaml)
    assert main(["train", "--config", str(config)]) == 2
    assert message in capsys.readouterr().err


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


def test_weights_that_are_not_finite_do_not_load(run_copy):
    weights = run_copy / "model.safetensors"
    state = load_file(weights)
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = torch.full_like(state[name], float("nan"))
    save_file(state, weights)
    (run_copy / "model.safetensors.sha256").unlink()  # an old run: no checksum
    card = json.loads((run_copy / "model.json").read_text())
    del card["weights_sha256"]  # nor the weights' digest in its card
    (run_copy / "model.json").write_text(json.dumps(card))
    with pytest.raises(CnnlabError, match="not finite"):
        cnnlab.load(run_copy)


def _flip_bytes(path, count=256) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, middle + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_damaged_checkpoint_or_model_is_found_and_nothing_is_overwritten(run_copy):
    best = _sha(run_copy / "model.safetensors")
    _flip_bytes(run_copy / "last.ckpt")
    result = _cli("train", "--resume", str(run_copy))
    assert result.returncode == 2 and "last.ckpt is damaged" in result.stderr
    assert "Traceback" not in result.stderr and _sha(run_copy / "model.safetensors") == best
    _flip_bytes(run_copy / "model.safetensors")
    result = _cli("predict", str(run_copy), str(run_copy / "curves.png"))
    assert result.returncode == 2 and "model.safetensors is damaged" in result.stderr


def test_an_empty_checkpoint_is_one_clear_error(run_copy):
    (run_copy / "last.ckpt").write_bytes(b"")
    (run_copy / "last.ckpt.sha256").unlink()
    result = _cli("train", "--resume", str(run_copy))
    assert result.returncode == 2 and "is empty (0 bytes)" in result.stderr
    assert "Traceback" not in result.stderr


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


HOLD_LOCK = """
import sys, time
from pathlib import Path
from cnnlab.base.fileio import folder_lock

with folder_lock(Path(sys.argv[1]), "training"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_second_resume_of_the_same_folder_is_refused(run_copy):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_copy)], text=True,
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = _cli("train", "--resume", str(run_copy))
    finally:
        holder.kill()  # dies holding it: its lock file stays behind, stale
        holder.wait()
    assert result.returncode == 2 and f"is in use: training by process {holder.pid}" in result.stderr
    assert (run_copy / ".lock").read_text() == str(holder.pid)
    assert _cli("train", "--resume", str(run_copy), "--quiet").returncode == 0
    assert not (run_copy / ".lock").exists()


def test_an_idx_header_claiming_gigabytes_is_refused_before_inflating(tmp_path):
    import gzip

    from cnnlab.data.idx import read_idx

    path = tmp_path / "huge-idx3-ubyte.gz"
    header = bytes([0, 0, 8, 3]) + (1).to_bytes(4, "big") + (40000).to_bytes(4, "big") * 2
    with gzip.open(path, "wb") as handle:
        handle.write(header + bytes(1000))
    with pytest.raises(CnnlabError, match="more than the 1 GiB allowed"):
        read_idx(path)


def test_an_image_over_the_pixel_limit_is_skipped_and_named(tmp_path, monkeypatch):
    from PIL import Image

    from cnnlab.base.config import DataConfig
    from cnnlab.data import images, load_dataset

    from .helpers import make_shape_folder

    monkeypatch.setattr(images, "MAX_PIXELS", 10_000)
    make_shape_folder(tmp_path / "shapes", per_class=10)
    big = tmp_path / "shapes" / "square" / "big.png"
    Image.new("L", (200, 100)).save(big)  # 20,000 pixels
    data = load_dataset(DataConfig(name=str(tmp_path / "shapes"), workers=0))
    assert big in data.skipped


def test_names_longer_than_a_path_may_be_are_not_a_crash(digits_run, capsys):
    spec = " ".join(["conv(4, k=1) relu"] * 20) + " flatten dense"  # well over 255 characters
    assert len(spec) > 300
    assert main(["summary", spec, "--input", "1x8x8"]) == 0
    assert main(["predict", str(digits_run.path), "x" * 300 + ".png"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "no such file or folder" in err


@pytest.mark.parametrize(("array", "message"), [
    (np.full((8, 8), np.nan), "NaN or infinite"),
    (np.full((8, 8), 300.0), r"must be in \[0, 1\] or 0\.\.255"),
    (np.full((8, 8), -1.0), r"got -1\.\.-1"),
    (np.zeros((0, 0)), "not empty"),
])
def test_python_arrays_that_are_not_images_are_refused(digits_run, array, message):
    with pytest.raises(CnnlabError, match=message):
        cnnlab.load(digits_run.path).predict(array)


def test_python_arrays_in_0_to_255_are_pixels_not_white(digits_run):
    from sklearn.datasets import load_digits

    image = load_digits().images[0] * (255 / 16)  # float64 in 0..255
    predictor = cnnlab.load(digits_run.path)
    as_float = predictor.predict(image)[0][0]
    as_uint8 = predictor.predict(image.round().astype(np.uint8))[0][0]
    assert as_float.index == as_uint8.index == 0
    assert as_float.probability == pytest.approx(as_uint8.probability, abs=1e-6)
    with pytest.raises(CnnlabError, match="topk must be at least 1"):
        predictor.predict(image, topk=-1)


def test_summary_classes_and_predict_output_folder(digits_run, tmp_path, capsys):
    assert main(["summary", "simple", "--classes", "-1"]) == 2
    assert main(["predict", str(digits_run.path), str(digits_run.path / "curves.png"), "--format",
                 "csv", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--classes must be at least 2" in err and "is a folder" in err


def test_a_layer_too_large_to_allocate_is_refused_with_its_estimate(capsys):
    assert main(["summary", "flatten dense(2000000000) dense", "--input", "1x28x28"]) == 2
    err = capsys.readouterr().err
    assert "would need 1,568,000,000,000 weights" in err and "GiB" in err


def test_strict_names_the_bad_file_in_one_line(tmp_path):
    from .helpers import make_folder

    make_folder(tmp_path / "shapes")
    result = _cli("train", "--data", str(tmp_path / "shapes"), "--strict", "--epochs", "1",
                  "--out", str(tmp_path / "run"))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: unreadable image") and "--strict" in lines[0]


def test_an_out_that_is_a_file_is_refused_before_the_data_loads(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("a file")
    assert main(["train", "--data", "digits", "--out", str(taken)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert taken.read_text() == "a file"


def test_a_numpy_batch_is_predicted_like_a_list(digits_run):
    from sklearn.datasets import load_digits

    batch = (load_digits().images[:3] * (255 / 16)).round().astype(np.uint8)[..., None]  # N, H, W, C
    predictor = cnnlab.load(digits_run.path)
    assert [top[0].index for top in predictor.predict(batch)] == \
        [top[0].index for top in predictor.predict(list(batch))]


@pytest.fixture
def own_disk(tmp_path):
    """A real filesystem of its own (tmpfs) that a test may fill; skipped where mounting is not
    allowed (it needs root)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk) -> None:
    with open(disk / "filler", "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * (1 << 16))
                handle.flush()
        except OSError:
            pass


def test_a_disk_filling_up_mid_run_ends_in_one_line_that_says_what_was_kept(own_disk):
    fill_after_first_epoch = lambda model, row: row.epoch == 1 and _fill(own_disk)  # noqa: E731
    with pytest.raises(CnnlabError) as error:
        cnnlab.train(data="digits", model="simple", epochs=3, out=str(own_disk / "runs"),
                     quiet=True, on_epoch_end=fill_after_first_epoch)
    message = str(error.value)
    run = own_disk / "runs"
    assert "No space left on device" in message and "\n" not in message
    assert "the best model (epoch 1) and the checkpoint of epoch 1" in message
    assert f"cnnlab train --resume {run}" in message
    assert not list(run.glob(".*.tmp"))
    (own_disk / "filler").unlink()
    assert cnnlab.load(run) is not None  # the kept model loads: its checksum matches
    assert _cli("train", "--resume", str(run), "--quiet").returncode == 0
    assert len(read_rows(run / "metrics.csv")) == 3
