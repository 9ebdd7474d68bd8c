"""README.md walked as a newcomer walks it: every command of the page, in order, as written, from a
fresh folder with ../shared beside it, each after the one before it. Only what the README's Tests
section names is changed: smaller data and shorter runs, and the files a user brings."""

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent

# Commands that stand for the user's own names or need what one machine here does not have
# (several GPUs, a database host): the README shows them, other tests run their real paths.
PLACEHOLDERS = ("RUN", "IMAGE", "path/to/", "photos/", "USER:PASSWORD", "$NODE_RANK", "dbhost")
NOT_WALKED = ("scripts/setup.sh", "torchrun", "createdb")
# What the README's Tests section says the walk shortens (flag, value), appended to each command
# of the verb, so that an explicit flag of the README's is overridden by the later one.
SHORTER = {"train": ["--epochs", "1", "--per-class", "30"], "tune": ["--trials", "2"],
           "lr-find": ["--steps", "30"], "evaluate": ["--max-shift", "1"],
           "compress": ["--epochs", "1", "--sizes", "128", "--prune", "0", "--timing", "0.1",
                        "--max-drop", "100"]}


def _joined(lines: list[str]) -> list[str]:
    """Lines with their backslash continuations joined."""
    commands, current = [], ""
    for line in lines:
        current += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            commands.append(current.strip())
            current = ""
    return commands


def _typed_lines(lines: list[str]) -> list[str]:
    """The lines a user types in a block of a session: `$ ` lines and their continuations."""
    typed, continued = [], False
    for line in lines:
        if line.startswith("$ ") or continued:
            typed.append(line[2:] if line.startswith("$ ") else line)
            continued = line.endswith("\\")
    return typed


def readme_commands() -> list[str]:
    """Every shell command of the page in order: the lines of ```bash blocks and the `$ ` lines
    of plain blocks (the others there are output)."""
    commands = []
    for language, body in re.findall(r"^```(\w*)\n(.*?)^```", README.read_text(), re.S | re.M):
        lines = [line.split("  #")[0].rstrip() for line in body.splitlines()]
        if language == "bash":
            lines = [line for line in lines if line and not line.lstrip().startswith("#")]
        elif language == "":
            lines = _typed_lines(lines)
        else:
            continue
        commands += _joined(lines)
    return [c for c in commands if not any(p in c for p in PLACEHOLDERS + NOT_WALKED)]


def shown_errors() -> dict[str, str]:
    """The commands the page shows failing: the error line it shows after each."""
    found = re.findall(r"^\$ (.+)\n(error: .+)$", README.read_text(), re.M)
    return {command.strip(): error.strip() for command, error in found}


def test_the_walk_covers_every_verb_the_readme_shows():
    verbs = {shlex.split(c)[1] for c in readme_commands() if c.startswith("cnnlab ")}
    assert {"train", "evaluate", "predict", "export", "serve", "attack", "explain", "report",
            "baselines", "check", "runs", "compare", "lr-find", "tune", "summary"} <= verbs


def _shortened(command: str) -> list[str]:
    words = shlex.split(command)
    if words[0] == "cnnlab":
        words[0] = str(BIN / "cnnlab")
        words += SHORTER.get(words[1], [])
    return words


def _user_files(work: Path, flowers12: Path) -> None:
    """What the README's commands take from the user: new_images/ (two Fashion-MNIST test
    images) and docs/images; ../shared/data/flowers12 is a three-species slice of the photos."""
    from PIL import Image

    from cnnlab.config import DataConfig
    from cnnlab.data import load_dataset

    from .helpers import photo_slice

    shutil.copytree(ROOT / "docs" / "images", work / "docs" / "images")
    sliced = photo_slice(flowers12, work.parent / "shared" / "data" / "flowers12",
                         ["daisy", "sunflower", "tigerlily"], 10, 4)
    for named in re.findall(r"\.\./shared/data/flowers12/(\S+\.jpg)", README.read_text()):
        if not (sliced / named).exists():  # a photo the README names keeps its place
            (sliced / named).symlink_to(flowers12 / named)
    fashion = load_dataset(DataConfig(name="fashion-mnist", val_fraction=0)).test
    (work / "new_images").mkdir()
    Image.fromarray(fashion.images[0, 0].numpy()).save(work / "new_images" / "boot.png")
    Image.fromarray(fashion.images[1, 0].numpy()).convert("RGB").save(
        work / "new_images" / "pullover.jpg")


class Server:
    """`cnnlab serve`, started in the background until the next command that is not a request."""

    def __init__(self, words: list[str], work: Path, env: dict) -> None:
        self.process = subprocess.Popen(words, cwd=work, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen("http://127.0.0.1:8000/healthz", timeout=2)
                return
            except OSError:
                assert self.process.poll() is None, self.process.stdout.read()
                time.sleep(0.5)
        raise AssertionError("cnnlab serve did not answer /healthz in 120 s")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGINT)
        self.process.wait(timeout=60)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_every_readme_command_runs_in_order_as_written(tmp_path, flowers12):
    work = tmp_path / "main"
    (work / "docs").mkdir(parents=True)
    _user_files(work, flowers12)
    env = {**os.environ, "CNNLAB_OFFLINE": "1", "COLUMNS": "120",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    server, errors = None, shown_errors()
    for command in readme_commands():
        if server and not command.startswith("curl"):
            server = server.stop()
        words = _shortened(command)
        print(f"{time.strftime('%H:%M:%S')} $ {shlex.join(words)}", flush=True)
        if command.startswith("cnnlab serve"):
            server = Server(words, work, env)
            continue
        result = subprocess.run(words, cwd=work, env=env, capture_output=True, text=True,
                                timeout=900)
        if command in errors:  # shown failing: the same one line and exit code 2
            assert result.returncode == 2 and result.stderr.strip() == errors[command], command
            continue
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        if command.startswith("curl"):  # curl's exit code is 0 whatever the server answered
            assert '"error"' not in result.stdout, f"{command}\n{result.stdout[-2000:]}"
    if server:
        server.stop()


def test_the_readme_says_what_the_walk_changes():
    text = " ".join(README.read_text().split())
    assert "The tests also walk this page as a newcomer would" in text
    for verb, flags in SHORTER.items():
        said = (f"`cnnlab {verb}` gets `{' '.join(flags)}`", f"`cnnlab {verb}` `{' '.join(flags)}`")
        assert any(phrase in text for phrase in said), verb
