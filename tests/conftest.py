import os
from pathlib import Path

import pytest
import torch

# Tests never reach the internet: built-in downloads are switched off and the cache is private.
os.environ["CNNLAB_OFFLINE"] = "1"


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


FLOWERS12 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "flowers12"


@pytest.fixture(scope="session")
def flowers12() -> Path:
    """Real photos, 12 flower species (60 train, 20 test JPEGs each), kept beside the project."""
    if not (FLOWERS12 / "train").is_dir():
        pytest.skip(f"the flowers12 photos are not at {FLOWERS12}")
    return FLOWERS12
