"""README.md's Python blocks run as written, from a copy of the project's layout: the only changes
are the small data the README itself says the tests use. What it says of fine-tuning's memory."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import cnnlab

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# What the README says the tests put in place of a long run (its note under the Python section).
SMALL_DATA = {'data="fashion-mnist", model="simple", epochs=6':
              'data="digits", model="simple", epochs=1'}
FLOWERS_RUN = "runs/flowers12-timm-efficientnet_lite0"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_the_readme_says_which_small_data_its_tests_use():
    text = " ".join(README.read_text().split())
    assert "The tests run every Python block of this page as written" in text
    for small in SMALL_DATA.values():
        assert f"`{small}`" in text


@pytest.fixture
def workspace(tmp_path, flowers12) -> Path:
    """The project's folder as the README's paths see it: docs/ inside, ../shared/data beside."""
    work = tmp_path / "main"
    (work / "docs").mkdir(parents=True)
    (work / "docs" / "images").symlink_to(ROOT / "docs" / "images")
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "flowers12").symlink_to(flowers12)
    return work


def _small_flowers_export(work: Path, flowers12: Path) -> None:
    """A linear probe on two species, saved and exported where the README's ONNX block looks."""
    from .helpers import photo_slice

    data = photo_slice(flowers12, work.parent / "two", ["daisy", "sunflower"], 12, 4)
    run = cnnlab.train(data={"name": str(data), "image_size": 96}, model="timm:efficientnet_lite0",
                       pretrained=True, freeze="backbone", quiet=True, out=str(work / FLOWERS_RUN))
    cnnlab.export(run.path, quiet=True)


def _run_block(code: str, work: Path) -> subprocess.CompletedProcess:
    for written, small in SMALL_DATA.items():
        code = code.replace(written, small)
    return subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "CNNLAB_OFFLINE": "1"})


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_every_python_block_runs_as_written(index, workspace, flowers12):
    code = python_blocks()[index]
    if FLOWERS_RUN in code:
        _small_flowers_export(workspace, flowers12)
    result = _run_block(code, workspace)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip(), "every block prints what it shows"


def test_the_readme_gives_fine_tunings_peak_memory_and_how_to_lower_it():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    after_the_recipe = readme[readme.index("**The fine-tuning recipe**"):].split("\n\n")[1]
    assert after_the_recipe.startswith("**Memory.**")
    assert re.search(r"peaks at \d+(\.\d+)? GiB", after_the_recipe)
    assert "--batch-size" in after_the_recipe and "--image-size" in after_the_recipe
