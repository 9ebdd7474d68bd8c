"""The README's picture of a report's first screen: RUN/report.html in headless Chromium.

    .venv/bin/python scripts/report_screenshot.py RUN/report.html docs/report.png
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import headless_chromium  # noqa: E402


def main(report: str, out: str) -> None:
    browser = headless_chromium(1200, 900)
    try:
        browser.get(Path(report).resolve().as_uri())
        browser.save_screenshot(out)
    finally:
        browser.quit()


if __name__ == "__main__":
    main(*sys.argv[1:3])
