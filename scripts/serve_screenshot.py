"""The README's picture of the web page: `cnnlab serve RUN` driven by headless Chromium.

    .venv/bin/python scripts/serve_screenshot.py RUN PHOTO docs/serve.png
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import headless_chromium  # noqa: E402
from tests.test_serve import serving  # noqa: E402


def main(run: str, photo: str, out: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with serving(run) as url:
        browser = headless_chromium()
        try:
            browser.get(url)
            browser.find_element(By.ID, "file").send_keys(str(Path(photo).resolve()))
            WebDriverWait(browser, 120).until(lambda b: b.execute_script(
                "const i = document.getElementById('overlay'); return i.complete && i.naturalWidth"))
            browser.save_screenshot(out)
        finally:
            browser.quit()


if __name__ == "__main__":
    main(*sys.argv[1:4])
