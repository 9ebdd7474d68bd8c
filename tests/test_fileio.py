"""Writing files: a disk that fills up during training or while the checkpoint is written ends in
one line that says what was kept and how to go on, with no temporary files left behind."""

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

import cnnlab
from cnnlab.base.errors import CnnlabError
from cnnlab.run.folder import load_checkpoint

from .helpers import error_line as _one_error_line
from .helpers import read_rows
from .helpers import run_cnnlab as _cli


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


def _mount_tmpfs(folder: Path, size: int) -> bool:
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True)
    return mounted.returncode == 0


def _fill_leaving(disk: Path, free: int) -> None:
    stats = os.statvfs(disk)
    (disk / "filler").write_bytes(b"\0" * (stats.f_bavail * stats.f_frsize - free))


def _limit_file_size(limit: int):
    """For a child process: writes past `limit` bytes fail with EFBIG (SIGXFSZ, which would kill
    the process instead, ignored)."""
    import resource

    def limit_it() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limit_it


@pytest.fixture
def little_room(digits_run, tmp_path):
    """The digits run, where its model fits on the disk but its checkpoint does not: on a tmpfs
    of its own where mounting is allowed (root), else in a process whose files may not grow that
    large. Yields the run and the options for subprocess.run."""
    model = (digits_run.path / "model.safetensors").stat().st_size
    checkpoint = (digits_run.path / "last.ckpt").stat().st_size
    assert checkpoint > model + 400_000  # optimizer state: there is room between the two
    disk = tmp_path / "disk"
    if _mount_tmpfs(disk, 8 << 20):
        shutil.copytree(digits_run.path, disk / "run")
        _fill_leaving(disk, model + 300_000)
        yield disk / "run", {}
        subprocess.run(["umount", "-l", str(disk)], check=False)
    else:
        shutil.copytree(digits_run.path, disk / "run")
        yield disk / "run", {"preexec_fn": _limit_file_size(model + 200_000)}


def test_a_full_disk_while_the_checkpoint_is_written_is_one_line(little_room):
    run, options = little_room
    before = (run / "last.ckpt").read_bytes()
    result = _cli("train", "--resume", str(run), "--epochs", "11", "--quiet", **options)
    assert result.returncode == 2, result.stderr
    line = _one_error_line(result.stderr)
    assert f"cannot write {run / 'last.ckpt'}" in line
    assert "the checkpoint of epoch 10" in line and f"cnnlab train --resume {run}" in line
    assert (run / "last.ckpt").read_bytes() == before
    assert load_checkpoint(run / "last.ckpt")["state"]["epoch"] == 10
    assert not list(run.glob(".*.tmp")) and not (run / ".lock").exists()
    assert cnnlab.load(run) is not None


def test_a_json_file_is_never_written_with_nan_or_infinity(tmp_path):
    from cnnlab.base.fileio import atomic_write_json

    path = atomic_write_json(tmp_path / "results.json", {"accuracy": 0.9})
    for value in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="not JSON compliant"):
            atomic_write_json(path, {"accuracy": value})
    assert path.read_text() == '{\n  "accuracy": 0.9\n}\n'  # the file before stands, whole
    assert not list(tmp_path.glob(".*.tmp"))
