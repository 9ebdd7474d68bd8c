import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch

import cnnlab

# Tests never reach the internet: built-in downloads are switched off and the cache is private.
os.environ["CNNLAB_OFFLINE"] = "1"

# helpers.py asserts for the tests that call it: its failures show their values as a test's do.
pytest.register_assert_rewrite("tests.helpers")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    os.environ["CNNLAB_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    torch.set_num_threads(2)
    yield


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """A small model trained once on scikit-learn's digits, shared by the tests that read runs."""
    import cnnlab

    out = tmp_path_factory.mktemp("runs") / "digits"
    return cnnlab.train(data="digits", model="simple", epochs=10, batch_size=64, out=str(out), quiet=True)


@pytest.fixture(scope="session")
def shapes_run(tmp_path_factory):
    """A small CNN trained on generated shapes at random places (tests.helpers.draw_shape knows
    each one's box): Grad-CAM's tests check that its maps and boxes find them."""
    from .helpers import make_shape_folder

    root = tmp_path_factory.mktemp("shapes")
    make_shape_folder(root / "data", per_class=200)
    model = ("conv(16, k=3, p=same) bn relu maxpool(2) conv(32, k=3, p=same) bn relu "
             "maxpool(2) conv(64, k=3, p=same) bn relu gap dense")
    return cnnlab.train(data={"name": str(root / "data"), "val_fraction": 0.15}, model=model,
                        epochs=8, batch_size=32, lr=3e-3, out=str(root / "run"), quiet=True)


@pytest.fixture
def run_copy(digits_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(digits_run.path, target)
    return target


@pytest.fixture(scope="session")
def probe_run(tmp_path_factory):
    """A frozen pretrained EfficientNet-Lite0 on a few digits: a deep timm network's run. Its probe
    tries three penalties of 20 steps each: the full path takes a minute on two cores."""
    from functools import partial

    from cnnlab.train import probe, transfer

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(probe, "MAX_ITERATIONS", 20)
        patch.setattr(transfer, "linear_probe", partial(probe.linear_probe,
                                                        c_path=(0.1, 1.0, 10.0)))
        return cnnlab.train(data={"name": "digits", "per_class": 10, "image_size": 32},
                            model="timm:efficientnet_lite0", pretrained=True, freeze="backbone",
                            calibrate=False, log="none", quiet=True,
                            out=str(tmp_path_factory.mktemp("probe") / "run"))


FLOWERS12 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "flowers12"


@pytest.fixture(scope="session")
def flowers12() -> Path:
    """Real photos, 12 flower species (60 train, 20 test JPEGs each), kept beside the project."""
    if not (FLOWERS12 / "train").is_dir():
        pytest.skip(f"the flowers12 photos are not at {FLOWERS12}")
    return FLOWERS12


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.png"
    os.mkfifo(path)
    return path


@pytest.fixture
def no_hang():
    """Fail a test that would block forever instead of hanging the suite."""
    def stop(*_):
        raise TimeoutError("blocked on a FIFO")
    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


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
