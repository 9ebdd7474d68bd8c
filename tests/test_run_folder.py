"""The run folder: its card (model.json) checked where it is read and bound to its weights, weights
and checkpoints checked against their recorded SHA-256 and loadable whenever a process dies
between two writes, and a lock that lets exactly one process train in it."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import cnnlab
from cnnlab.base.errors import CnnlabError
from cnnlab.base.fileio import sha256_of
from cnnlab.cli import main
from cnnlab.run import folder

from .helpers import captured_error_line as _one_error_line
from .helpers import run_cnnlab as _cli


def test_the_test_accuracy_is_saved_in_the_run_folder(digits_run):
    results = json.loads((digits_run.path / "results.json").read_text())
    card = json.loads((digits_run.path / "model.json").read_text())
    assert results["test_accuracy"] == pytest.approx(digits_run.test_accuracy, abs=1e-6)
    assert card["test_accuracy"] == pytest.approx(digits_run.test_accuracy, abs=1e-6)
    assert results["status"] == "finished" and results["best_epoch"] == digits_run.best_epoch
    assert oct((digits_run.path / "model.safetensors").stat().st_mode & 0o777) == \
        oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _card(run) -> dict:
    return json.loads((run / "model.json").read_text())


def _write_card(run, values: dict) -> None:
    (run / "model.json").write_text(json.dumps(values))


@pytest.mark.parametrize(("change", "message"), [
    ({"interpolation": "evil"}, "unknown interpolation 'evil'"),
    ({"crop_pct": 0}, "crop_pct must be a number >= 0.05 and <= 1, got 0.0"),
    ({"crop_pct": 1e-6}, "crop_pct must be"),
    ({"crop_pct": -1}, "crop_pct must be"),
    ({"std": [0.0]}, "std positive"),
])
def test_bad_preprocessing_values_are_one_line(run_copy, capsys, change, message):
    card = _card(run_copy)
    card["preprocessing"].update(change)
    _write_card(run_copy, card)
    assert main(["predict", str(run_copy), str(run_copy / "curves.png")]) == 2
    assert message in _one_error_line(capsys)


def test_duplicated_or_reordered_class_names_are_refused(run_copy):
    card = _card(run_copy)
    names = card["class_names"]
    _write_card(run_copy, {**card, "class_names": [names[0], *names[:-1]]})
    with pytest.raises(CnnlabError, match="name a class twice"):
        cnnlab.load(run_copy)
    _write_card(run_copy, {**card, "class_names": [names[1], names[0], *names[2:]]})
    with pytest.raises(CnnlabError, match="class_names differ from the names the weights"):
        cnnlab.load(run_copy)


def test_weights_and_checksum_from_another_run_are_refused(run_copy, tmp_path):
    other = tmp_path / "other"
    cnnlab.train(data="digits", model="simple", epochs=1, seed=1, out=str(other), quiet=True)
    for name in ("model.safetensors", "model.safetensors.sha256"):
        shutil.copy(other / name, run_copy / name)
    with pytest.raises(CnnlabError, match="is not the weights model.json describes"):
        cnnlab.load(run_copy)


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


def test_a_huge_safetensors_header_is_refused_before_it_is_parsed(run_copy):
    weights = run_copy / "model.safetensors"
    header = json.dumps({"__metadata__": {"pad": "x" * 5_000_000}}).encode()
    weights.write_bytes(len(header).to_bytes(8, "little") + header)
    (run_copy / "model.safetensors.sha256").unlink()
    card = _card(run_copy)
    del card["weights_sha256"]
    _write_card(run_copy, card)
    with pytest.raises(CnnlabError, match="its header claims 5,000,"):
        cnnlab.load(run_copy)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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


def test_a_kill_between_weights_and_checksum_leaves_a_model_that_loads(run_copy, monkeypatch):
    model, card = folder.load_model(run_copy)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)  # a newer epoch's weights

    def killed(path, digests):  # the process dies before the record loses the old digest
        if len(digests) == 1:
            raise KeyboardInterrupt
        real(path, digests)

    real = folder._write_record
    monkeypatch.setattr(folder, "_write_record", killed)
    with pytest.raises(KeyboardInterrupt):
        folder.save_model(run_copy, model, card)
    monkeypatch.undo()
    assert len(folder.recorded_digests(run_copy / "model.safetensors")) == 2
    loaded, _ = folder.load_model(run_copy)
    assert torch.equal(next(loaded.parameters()), next(model.parameters()))


def test_a_kill_between_weights_and_model_json_leaves_a_model_that_loads(run_copy, monkeypatch):
    model, card = folder.load_model(run_copy)
    real = folder.atomic_write_text

    def killed(path, text):
        if path.name == "model.json":
            raise KeyboardInterrupt
        return real(path, text)

    monkeypatch.setattr(folder, "atomic_write_text", killed)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    with pytest.raises(KeyboardInterrupt):
        folder.save_model(run_copy, model, card)
    monkeypatch.undo()
    loaded, _ = folder.load_model(run_copy)
    assert torch.equal(next(loaded.parameters()), next(model.parameters()))


def test_a_kill_before_the_checkpoint_is_replaced_keeps_the_old_one(run_copy, monkeypatch):
    before = (run_copy / "last.ckpt").read_bytes()
    monkeypatch.setattr(folder, "atomic_write", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        folder.save_checkpoint(run_copy / "last.ckpt", {"epoch": 99})
    monkeypatch.undo()
    assert (run_copy / "last.ckpt").read_bytes() == before
    assert folder.load_checkpoint(run_copy / "last.ckpt")  # its record still accepts it
    folder.save_checkpoint(run_copy / "last.ckpt", {"epoch": 99})
    assert folder.recorded_digests(run_copy / "last.ckpt") == \
        [sha256_of(run_copy / "last.ckpt")]


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
