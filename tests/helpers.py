"""What many test files share: test data made on the fly (image folders in every mode, with broken
files among them; shapes; digits), the command line run in a process of its own and its one error
line, a free port, a headless browser."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def shape_image(kind: str, seed: int, size: int = 24) -> np.ndarray:
    """A bright square or a bright horizontal bar on a dark, noisy background (uint8, H x W)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 40, (size, size)).astype(np.uint8)
    offset = int(rng.integers(2, 6))
    if kind == "square":
        image[offset:offset + 12, offset:offset + 12] = 220
    else:
        image[offset + 4:offset + 8, 2:size - 2] = 220
    return image


MODES = ["L", "RGB", "RGBA", "P", "I;16", "CMYK", "1"]


def save_in_mode(array: np.ndarray, mode: str, path: Path) -> Path:
    gray = Image.fromarray(array, mode="L")
    if mode == "I;16":
        image = Image.fromarray(array.astype(np.uint16) * 257)
        assert image.mode.startswith("I;16"), image.mode
        path = path.with_suffix(".png")
    elif mode == "CMYK":
        image = gray.convert("RGB").convert("CMYK")
        path = path.with_suffix(".jpg")
    elif mode == "RGBA":
        image = gray.convert("RGBA")
    elif mode == "P":
        image = gray.convert("RGB").convert("P")
    else:
        image = gray.convert(mode)
    image.save(path)
    return path


def make_folder(root: Path, per_class: int = 12, broken: bool = True, modes=MODES) -> dict:
    """root/{square,bar}/NNN.png in rotating modes, plus broken files when asked."""
    made = {"good": 0, "broken": []}
    for label, kind in enumerate(("bar", "square")):
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            save_in_mode(shape_image(kind, seed=label * 1000 + i), modes[i % len(modes)],
                         folder / f"{i:03d}.png")
            made["good"] += 1
    if broken:
        junk = root / "bar" / "junk.png"
        junk.write_bytes(b"this is not an image at all")
        truncated = root / "square" / "truncated.png"
        full = root / "square" / "000.png"
        truncated.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
        empty = root / "square" / "empty.jpg"
        empty.write_bytes(b"")
        made["broken"] = [junk, truncated, empty]
    (root / "bar" / "notes.txt").write_text("not an image, ignored by extension")
    return made


SHAPES = ("square", "cross", "disc")


def draw_shape(kind: str, rng: np.random.Generator, size: int = 32,
               side: int = 10) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A shape at a random position on noise; returns the image and its box (top, left, h, w)."""
    image = rng.integers(0, 60, (size, size)).astype(np.uint8)
    top, left = (int(v) for v in rng.integers(0, size - side + 1, 2))
    ys, xs = np.mgrid[0:side, 0:side]
    if kind == "square":
        mask = (ys == 0) | (ys == side - 1) | (xs == 0) | (xs == side - 1)
    elif kind == "cross":
        mask = (abs(ys - side // 2) <= 1) | (abs(xs - side // 2) <= 1)
    else:
        centre = (side - 1) / 2
        mask = (ys - centre) ** 2 + (xs - centre) ** 2 <= (side / 2) ** 2
    image[top:top + side, left:left + side][mask] = 230
    return image, (top, left, side, side)


def make_shape_folder(root: Path, per_class: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for kind in SHAPES:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(draw_shape(kind, rng)[0]).save(root / kind / f"{i:04d}.png")


def read_rows(path: Path, missing_ok: bool = False) -> list[dict]:
    """The rows of a CSV file such as a run's metrics.csv; [] for a missing file if allowed."""
    if missing_ok and not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def photo_slice(source: Path, target: Path, classes: list[str], train: int, test: int) -> Path:
    """A small train/test photo folder of links to the first images of some classes."""
    for split, count in (("train", train), ("test", test)):
        for name in classes:
            folder = target / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for photo in sorted((source / split / name).iterdir())[:count]:
                (folder / photo.name).symlink_to(photo)
    return target


def headless_chromium(width: int = 1000, height: int = 900):
    """Debian's Chromium driven by Selenium, headless (scripts/setup.sh installs both)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     f"--window-size={width},{height}"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now, for a real server a test starts."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_cnnlab(*args: str, **options) -> subprocess.CompletedProcess:
    """`python -m cnnlab ARGS` in a process of its own, its output captured as text."""
    return subprocess.run([sys.executable, "-m", "cnnlab", *args], capture_output=True, text=True,
                          timeout=600, **options)


def error_line(text: str) -> str:
    """The one line of a command's error output, which must start with 'error: '."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def captured_error_line(capsys) -> str:
    """The one line that `cnnlab.cli.main` wrote to stderr, which must start with 'error: '."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def digit_png(path, index: int = 0):
    """scikit-learn's digit number `index` as an 8x8 PNG at `path`."""
    from PIL import Image
    from sklearn.datasets import load_digits

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((load_digits().images[index] * (255 / 16)).astype("uint8")).save(path)
    return path


def overconfident_logits():
    """Logits (400, 5) and labels of a classifier right most of the time and far too sure of it:
    a temperature above 1 helps them."""
    import torch

    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (400,), generator=generator)
    logits = torch.randn(400, 5, generator=generator) * 4
    logits[torch.arange(400), labels] += 3  # right most of the time, and far too sure of it
    return logits, labels
