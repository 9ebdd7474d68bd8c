"""The served page's states in headless Chromium at a laptop's 1280x768: the first screen, an
error, an ONNX export without Grad-CAM, and a header that names the run and its test accuracy."""

import shutil

import pytest

import cnnlab

from .helpers import headless_chromium
from .test_serve import flowers_run, serving  # noqa: F401  (a fixture and the server helper)

SHOWN_IMAGES = """return [...document.querySelectorAll('img')]
    .filter(i => i.offsetParent !== null).map(i => i.id);"""
BARS_BOTTOM = """return Math.max(...[...document.querySelectorAll('#top li')]
    .map(li => li.getBoundingClientRect().bottom));"""


def _browser():
    from selenium.webdriver.support.ui import WebDriverWait

    browser = headless_chromium(1280, 768)
    return browser, WebDriverWait(browser, 60)


def _upload(browser, wait, path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen

    browser.find_element(By.ID, "file").send_keys(str(path))
    wait.until(seen.visibility_of_element_located((By.CSS_SELECTOR, "#top li")))


def _caption_settled(browser) -> str | None:
    text = browser.find_element("id", "overlay-caption").text
    return None if text.endswith("computing…") else text


@pytest.mark.slow  # minutes of the plain suite: run with -m slow, as CI does
def test_first_screen_error_and_header(flowers_run, flowers12, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen

    photo = sorted((flowers12 / "test" / "sunflower").iterdir())[0]
    text = tmp_path / "notes.txt"
    text.write_text("not a photo")
    accuracy = f"test accuracy {flowers_run.test_accuracy * 100:.1f}%"
    with serving(flowers_run.path) as url:
        browser, wait = _browser()
        try:
            browser.get(url)
            wait.until(lambda b: "2 classes" in b.find_element(By.ID, "model").text)
            assert browser.find_element(By.ID, "run").text == f"{flowers_run.path.name}: {accuracy}"
            assert browser.execute_script(SHOWN_IMAGES) == []  # no empty image placeholders
            _upload(browser, wait, photo)
            assert browser.execute_script(BARS_BOTTOM) <= browser.execute_script(
                "return window.innerHeight")  # the bars, all of them, without scrolling
            wait.until(_caption_settled)
            assert browser.execute_script(SHOWN_IMAGES) == ["preview", "overlay"]
            browser.find_element(By.ID, "file").send_keys(str(text))
            wait.until(seen.visibility_of_element_located((By.ID, "error")))
            assert browser.execute_script(SHOWN_IMAGES) == []
        finally:
            browser.quit()


@pytest.mark.slow
def test_an_onnx_export_says_why_there_is_no_grad_cam(flowers_run, flowers12, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By

    run = tmp_path / "run"
    shutil.copytree(flowers_run.path, run)
    cnnlab.export(run, quiet=True)
    photo = sorted((flowers12 / "test" / "daisy").iterdir())[0]
    with serving(run / "export") as url:
        browser, wait = _browser()
        try:
            browser.get(url)
            wait.until(lambda b: "test accuracy" in b.find_element(By.ID, "run").text)
            assert browser.find_element(By.ID, "run").text.startswith("run/export: ")
            _upload(browser, wait, photo)
            caption = wait.until(_caption_settled)
            assert caption.startswith("no Grad-CAM: Grad-CAM needs the PyTorch model's gradients")
            assert browser.find_element(By.ID, "overlay-caption").is_displayed()
            assert browser.execute_script(SHOWN_IMAGES) == ["preview"]
        finally:
            browser.quit()
