"""The fourth reliability sweep: export folders are loaded as a whole or refused in one line, a
re-export replaces its folder in one step, the run lock lets exactly one process in, and a full
disk, a YAML anchor bomb or a checkpoint without RNG state each end in one clear line."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnlab
from cnnlab.base.config import load_config
from cnnlab.base.errors import CnnlabError
from cnnlab.cli import main
from cnnlab.models.onnx_graph import to_onnx
from cnnlab.run.contract import InputSpec
from cnnlab.run.folder import build_model, load_checkpoint, read_card, save_checkpoint

from .helpers import make_shape_folder


def _cli(*args: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnlab", *args], capture_output=True, text=True,
                          timeout=600, **options)


def _one_error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def _digit_images(folder: Path) -> list[Path]:
    from sklearn.datasets import load_digits

    folder.mkdir(parents=True, exist_ok=True)
    images = load_digits().images[:4]
    paths = [folder / f"digit{i}.png" for i in range(len(images))]
    for image, path in zip(images, paths, strict=True):
        Image.fromarray((image * (255 / 16)).astype(np.uint8)).save(path)
    return paths


def _predicted(source: Path, images: list[Path]) -> list:
    return [[(score.name, score.probability) for score in top]
            for top in cnnlab.load(source, unknown=False).predict(images, topk=3)]


def _file_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


@pytest.fixture(scope="module")
def exported_run(digits_run, tmp_path_factory):
    """A copy of the digits run with its fp32 and int8 export in RUN/export/."""
    run = tmp_path_factory.mktemp("exported") / "run"
    shutil.copytree(digits_run.path, run)
    cnnlab.export(run, int8=True, calibration=64, limit=100, quiet=True)
    return run


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return _digit_images(tmp_path_factory.mktemp("images"))


@pytest.fixture
def export_copy(exported_run, tmp_path):
    target = tmp_path / "export"
    shutil.copytree(exported_run / "export", target)
    return target


@pytest.fixture(scope="module")
def three_class_graph(tmp_path_factory) -> Path:
    """model.onnx of a 3-class run on 8x8 grayscale images: the digits export's input, other
    classes."""
    root = tmp_path_factory.mktemp("shapes")
    make_shape_folder(root / "data", per_class=20)
    run = cnnlab.train(data=str(root / "data"), model="simple", epochs=1, image_size=8, channels=1,
                       out=str(root / "run"), quiet=True)
    return cnnlab.export(run.path, limit=20, quiet=True).folder / "model.onnx"


@pytest.fixture(scope="module")
def larger_input_graph(exported_run, tmp_path_factory) -> Path:
    """model.onnx of the digits architecture built for 12x12 images: the digits export's
    classes, another input."""
    card = read_card(exported_run).replace(input=InputSpec(1, 12, 12))
    path = tmp_path_factory.mktemp("larger") / "model.onnx"
    to_onnx(build_model(card), card.input.shape, path, say=lambda text: None)
    return path


def _drop_checksums(export: Path) -> None:
    """export.json as cnnlab wrote it before it recorded checksums."""
    values = json.loads((export / "export.json").read_text())
    del values["sha256"]
    (export / "export.json").write_text(json.dumps(values, indent=2))


# 1. An export folder is checked as a whole when it loads.

def test_export_json_records_the_sha256_of_every_file(exported_run):
    values = json.loads((exported_run / "export" / "export.json").read_text())
    assert set(values["sha256"]) == {"model.onnx", "model.int8.onnx"}
    for name, digest in values["sha256"].items():
        assert hashlib.sha256((exported_run / "export" / name).read_bytes()).hexdigest() == digest


@pytest.mark.parametrize(("graph", "message"), [
    ("three_class_graph", "it outputs 3 classes, export.json names 10"),
    ("larger_input_graph", "it takes (batch, 1, 12, 12) pixels, export.json says (batch, 1, 8, 8)"),
])
def test_a_graph_from_another_model_is_refused_in_one_line(export_copy, images, capsys, request,
                                                           graph, message):
    shutil.copy(request.getfixturevalue(graph), export_copy / "model.onnx")
    assert main(["predict", str(export_copy), str(images[0])]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "model.onnx is damaged or not the file" in line and "SHA-256" in line
    _drop_checksums(export_copy)  # an export from before checksums: the graph is checked instead
    assert main(["predict", str(export_copy), str(images[0])]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "model.onnx does not match" in line and message in line


def test_the_server_refuses_a_mismatched_export_before_it_serves(export_copy, three_class_graph):
    from cnnlab.serve.app import create_app

    shutil.copy(three_class_graph, export_copy / "model.onnx")
    _drop_checksums(export_copy)
    with pytest.raises(CnnlabError, match="it outputs 3 classes, export.json names 10"):
        create_app(export_copy)


@pytest.mark.parametrize("name", ["model.onnx", "model.int8.onnx"])
def test_one_changed_byte_in_any_onnx_file_is_a_checksum_error(export_copy, images, capsys, name):
    data = bytearray((export_copy / name).read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the weights: the graph still parses
    (export_copy / name).write_bytes(bytes(data))
    assert main(["predict", str(export_copy), str(images[0])]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"{name} is damaged or not the file" in line


def test_an_export_without_checksums_still_loads_and_predicts_the_same(export_copy, images):
    before = _predicted(export_copy, images)
    _drop_checksums(export_copy)
    assert _predicted(export_copy, images) == before


def test_an_onnx_file_export_json_does_not_list_is_refused(export_copy, images, capsys):
    shutil.copy(export_copy / "model.onnx", export_copy / "other.onnx")
    assert main(["predict", str(export_copy / "other.onnx"), str(images[0])]) == 2
    assert "other.onnx is not one of the files" in _one_error_line(capsys.readouterr().err)


# 1b. A re-export replaces the folder in one step.

def _staging_folders(run: Path) -> list[Path]:
    return [path for path in run.glob(".export.*.tmp") if path.is_dir()]


def _kill_when(process: subprocess.Popen, ready, kill_signal: int) -> None:
    deadline = time.monotonic() + 300
    while not ready():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the export never reached the point to kill it at"
        time.sleep(0.02)
    process.send_signal(kill_signal)
    process.wait(timeout=60)


@pytest.mark.parametrize(("kill_signal", "when"), [
    (signal.SIGKILL, "the temporary folder appears"),
    (signal.SIGTERM, "the new model.onnx is written"),
])
def test_a_killed_re_export_leaves_the_old_export_whole(exported_run, images, tmp_path,
                                                        kill_signal, when):
    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    export = run / "export"
    files, predictions = _file_bytes(export), _predicted(export, images)
    process = subprocess.Popen([sys.executable, "-m", "cnnlab", "export", str(run), "--int8",
                                "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if when == "the temporary folder appears":
        _kill_when(process, lambda: _staging_folders(run), kill_signal)
    else:
        _kill_when(process, lambda: any((f / "model.onnx").is_file()
                                        for f in _staging_folders(run)), kill_signal)
    assert process.returncode == -kill_signal
    assert _staging_folders(run)  # what the kill left beside the export
    assert _file_bytes(export) == files
    assert _predicted(export, images) == predictions
    cnnlab.export(run, limit=50, quiet=True)  # the next export removes the leftovers
    assert not list(run.glob(".export.*"))
    assert sorted(p.name for p in export.iterdir()) == ["export.json", "model.onnx"]
    assert len(_predicted(export, images)) == len(images)


def test_a_re_export_keeps_other_results_in_the_folder(exported_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    results = run / "export" / "evaluate" / "metrics.json"
    results.parent.mkdir()
    results.write_text("{}")
    cnnlab.export(run, limit=50, quiet=True)
    assert results.read_text() == "{}"
    assert not (run / "export" / "model.int8.onnx").exists()  # this export made no int8 model


def _folder_with(folder: Path, text: str) -> Path:
    folder.mkdir()
    (folder / "model.onnx").write_text(text)
    return folder


def test_without_renameat2_two_renames_replace_the_folder(tmp_path, monkeypatch):
    from cnnlab.export import replace

    monkeypatch.setattr(replace, "_exchange", lambda first, second: False)  # as on macOS
    export = _folder_with(tmp_path / "export", "old")
    with replace.replacing(export, ("model.onnx",)) as work:
        (work / "model.onnx").write_text("new")
    assert (export / "model.onnx").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_an_old_folder_left_under_its_hidden_name_is_put_back(tmp_path):
    from cnnlab.export.replace import remove_leftovers

    _folder_with(tmp_path / ".export.old-1-ab.tmp", "old")  # killed between the two renames
    _folder_with(tmp_path / ".export.new-1-cd.tmp", "new, perhaps half-written")
    remove_leftovers(tmp_path / "export")
    assert (tmp_path / "export" / "model.onnx").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_an_out_folder_with_other_files_is_not_replaced(digits_run, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["export", str(digits_run.path), "--out", str(mine), "--quiet"]) == 2
    assert "holds files and no export.json" in _one_error_line(capsys.readouterr().err)
    assert (mine / "notes.txt").read_text() == "keep me"


# 2a. The run lock: of processes racing for a stale lock, exactly one gets it.

RACER = """
import sys, time
from pathlib import Path
from cnnlab.base.errors import CnnlabError
from cnnlab.base.fileio import folder_lock

folder = Path(sys.argv[1])
print("ready", flush=True)
while not (folder.parent / "go").exists():
    time.sleep(0.001)
try:
    with folder_lock(folder, "training"):
        print("won", flush=True)
        while not (folder.parent / "done").exists():
            time.sleep(0.01)
except CnnlabError:
    print("refused", flush=True)
"""


def _dead_pid() -> int:
    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                             capture_output=True, text=True, check=True)
    return int(process.stdout)


def _race(folder: Path, racers: int) -> list[str]:
    """Start `racers` processes, let them take the lock at once, return what each got."""
    processes = [subprocess.Popen([sys.executable, "-c", RACER, str(folder)], text=True,
                                  stdout=subprocess.PIPE) for _ in range(racers)]
    try:
        assert all(p.stdout.readline().strip() == "ready" for p in processes)
        (folder.parent / "go").touch()
        outcomes = [p.stdout.readline().strip() for p in processes]
        (folder.parent / "done").touch()
        assert all(p.wait(timeout=60) == 0 for p in processes)
    finally:
        for process in processes:
            process.kill()
            process.wait()
    return outcomes


@pytest.mark.parametrize("round_", range(8))
def test_of_processes_racing_for_a_stale_lock_exactly_one_wins(tmp_path, round_):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".lock").write_text(str(_dead_pid()))  # left by a training that crashed
    outcomes = _race(folder, racers=4)
    assert sorted(outcomes) == ["refused", "refused", "refused", "won"]
    assert not (folder / ".lock").exists()


# 2b. A disk filling while the checkpoint is written: one line, exit 2, the old checkpoint kept.

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


# 2c. A YAML anchor bomb in a config file is refused at once, without expanding it.

def _anchor_bomb(levels: int = 9) -> str:
    lines = ["augment:", "  rotation:", '    - &a0 ["lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"    - &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join([*lines, f"epochs: *a{levels}", ""])  # 6 * 9**9: two billion strings


@pytest.mark.parametrize(("text", "message"), [
    (_anchor_bomb(), "stands for more than 1,000,000 values once its YAML aliases"),
    ("loop: &a [*a]\nepochs: *a\n", "stands for more than 1,000,000 values"),
    ("epochs: " + "[" * 5000 + "]" * 5000 + "\n", "is not valid YAML"),
])
def test_a_config_file_that_expands_without_bound_is_one_line(tmp_path, capsys, text, message):
    config = tmp_path / "bomb.yaml"
    config.write_text(text)
    tracemalloc.start()
    try:
        with pytest.raises(CnnlabError, match="config file .*bomb.yaml"):
            load_config(config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 << 20  # the expansion would take hundreds of gigabytes
    assert main(["train", "--config", str(config)]) == 2
    assert message in _one_error_line(capsys.readouterr().err)


def test_anchors_and_aliases_within_bounds_still_load(tmp_path):
    config = tmp_path / "anchors.yaml"
    config.write_text("epochs: &n 3\npatience: *n\ndata:\n  name: digits\n")
    loaded = load_config(config)
    assert (loaded.epochs, loaded.patience, loaded.data.name) == (3, 3, "digits")


# 2d. A checkpoint without RNG state: resumed, with a warning that it is not exact.

@pytest.fixture
def run_copy(digits_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(digits_run.path, target)
    return target


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
