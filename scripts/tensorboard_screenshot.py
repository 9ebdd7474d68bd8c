"""The README's picture of TensorBoard showing run folders: a real `tensorboard` server on
loopback, its scalars page in headless Chromium.

    .venv/bin/python scripts/tensorboard_screenshot.py runs docs/tensorboard.png
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import free_port, headless_chromium  # noqa: E402


def _wait(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer")


def main(logdir: str, out: str) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", logdir,
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    browser = headless_chromium(1400, 900)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait(url)
        browser.get(f"{url}?darkMode=false#timeseries")
        time.sleep(8)  # the page draws its charts after the data arrives
        browser.save_screenshot(out)
    finally:
        browser.quit()
        server.terminate()


if __name__ == "__main__":
    main(*sys.argv[1:3])
