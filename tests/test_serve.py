"""The HTTP API: the same numbers as predict and explain, every bad upload or query answered with
the status that names it, every error JSON and counted, and a real server under concurrent load."""

import dataclasses
import io
import json
import resource
import subprocess
import sys
import time
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import cnnlab
from cnnlab.explain import explain
from cnnlab.serve.app import create_app

from .helpers import free_port, headless_chromium, photo_slice


def _digit_png(index: int = 0, size: int = 8) -> bytes:
    from sklearn.datasets import load_digits

    array = (load_digits().images[index] * (255 / 16)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).resize((size, size)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(digits_run):
    with TestClient(create_app(digits_run.path)) as test_client:
        yield test_client


def test_predict_gives_the_numbers_cnnlab_predict_gives(client, digits_run, tmp_path):
    data = _digit_png(3, size=40)
    (tmp_path / "three.png").write_bytes(data)
    expected = cnnlab.load(digits_run.path).predict(tmp_path / "three.png", topk=3)[0]
    for response in (client.post("/predict?topk=3", files={"file": ("three.png", data)}),
                     client.post("/predict?topk=3", content=data,
                                 headers={"content-type": "application/octet-stream"})):
        assert response.status_code == 200, response.text
        top = response.json()["predictions"][0]["top"]
        assert [s["index"] for s in top] == [s.index for s in expected]
        assert [s["probability"] for s in top] == pytest.approx([s.probability for s in expected],
                                                                abs=1e-6)


def test_several_files_in_one_request_keep_their_order(client):
    files = [("file", (f"{i}.png", _digit_png(i))) for i in range(5)]
    answer = client.post("/predict", files=files).json()["predictions"]
    assert [row["input"] for row in answer] == [f"{i}.png" for i in range(5)]
    assert [row["top"][0]["name"] for row in answer] == ["0", "1", "2", "3", "4"]


def _noise_png(seed: int) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_python_the_verb_and_serve_give_one_prediction(client, digits_run, tmp_path):
    """The same images through cnnlab.load(run).predict, the predict verb (and its JSON file) and
    /predict: the same classes, probabilities and unknown verdict, in dicts of the same keys."""
    images = {"seven.png": _digit_png(7), **{f"noise{i}.png": _noise_png(i) for i in range(4)}}
    paths = []
    for name, data in images.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    python = cnnlab.load(digits_run.path).predict(paths, topk=3)
    verb = cnnlab.predict(digits_run.path, [str(p) for p in paths], topk=3,
                          out=str(tmp_path / "predictions.json"))
    written = json.loads((tmp_path / "predictions.json").read_text())
    files = [("file", (name, data)) for name, data in images.items()]
    served = client.post("/predict?topk=3", files=files).json()["predictions"]
    assert {p.known for p in python} == {True, False}  # both verdicts are compared
    by_path = {r.input: r for r in verb.results}
    for path, ours, from_file, answer in zip(paths, python, written, served, strict=True):
        theirs = by_path[str(path)]
        # rounded to 6 places, and batched with other images: equal to a few units in the 6th
        assert ours.unknown is not None and theirs.unknown is not None
        assert ours.unknown.score == pytest.approx(theirs.unknown.score, abs=1e-5)
        assert ours.unknown == dataclasses.replace(theirs.unknown, score=ours.unknown.score)
        assert [(s.name, s.index) for s in ours] == [(s.name, s.index) for s in theirs]
        assert [s.probability for s in ours] == pytest.approx([s.probability for s in theirs],
                                                              abs=1e-5)
        assert ours.to_dict().keys() == theirs.to_dict().keys() == from_file.keys() == answer.keys()
        assert answer["input"] == path.name and from_file["input"] == ours.input == str(path)
        assert [s["name"] for s in answer["top"]] == [s.name for s in ours]
        assert [s["probability"] for s in answer["top"]] == pytest.approx(
            [s.probability for s in ours], abs=1e-5)
        assert answer["known"] == ours.known == from_file["known"]
        assert answer["unknown_score"] == pytest.approx(ours.score, abs=1e-5)
        assert (answer["unknown_threshold"], answer["unknown_score_name"]) == \
            (ours.unknown.threshold, ours.unknown.score_name)


def test_explain_gives_the_gradcam_of_cnnlab_explain(client, digits_run, tmp_path):
    data = _digit_png(7, size=8)
    (tmp_path / "seven.png").write_bytes(data)
    expected = explain(digits_run.path, [tmp_path / "seven.png"], method="gradcam",
                       out=tmp_path / "out").arrays["seven"]
    answer = client.post("/explain?format=json", files={"file": ("seven.png", data)}).json()
    assert np.allclose(np.array(answer["heatmap"]), expected, atol=1e-5)
    png = client.post("/explain", files={"file": ("seven.png", data)})
    assert png.headers["content-type"] == "image/png"
    assert png.headers["x-predicted-class"] == answer["top"][0]["name"]
    assert Image.open(io.BytesIO(png.content)).size[0] == 320


def test_model_health_and_metrics(client, digits_run):
    card = client.get("/model").json()
    assert card["class_names"] == list(cnnlab.load(digits_run.path).class_names)
    # a network this small stays on PyTorch under --engine auto (test_engine.py)
    assert card["runtime"] == "pytorch" and client.get("/healthz").json() == {"status": "ok"}
    client.post("/predict", content=b"not an image")
    metrics = client.get("/metrics").text
    assert 'cnnlab_requests_total{path="/predict",status="415"}' in metrics
    assert "cnnlab_batch_size_bucket" in metrics and "cnnlab_request_seconds_bucket" in metrics


def _bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, format="PNG")  # 400 megapixels in a few kB
    return buffer.getvalue()


def _truncated() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
        buffer, format="JPEG")
    return buffer.getvalue()[:600]


def _icon() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buffer, format="ICO")  # an image, but not an accepted format
    return buffer.getvalue()


def _many_parts(count: int) -> tuple[bytes, str]:
    boundary = "cnnlabboundary"
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n'
    return (part * count + f"--{boundary}--\r\n").encode(), f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize(("name", "request_kwargs", "status"), [
    ("text as a png", {"files": {"file": ("a.png", b"hello", "image/png")}}, 415),
    ("icon", {"files": {"file": ("a.ico", _icon(), "image/png")}}, 415),
    ("bomb", {"files": {"file": ("bomb.png", _bomb(), "image/png")}}, 413),
    ("truncated", {"files": {"file": ("cut.jpg", _truncated(), "image/jpeg")}}, 422),
    ("missing field", {"files": {"photo": ("a.png", _digit_png())}}, 422),
    ("text field", {"data": {"file": "a string"}}, 422),
    ("empty body", {"content": b""}, 422),
    ("huge text field", {"data": {"note": "x" * 200_000}, "files": {"file": ("a.png", _digit_png())}}, 400),
])
def test_bad_uploads_get_a_json_error_naming_the_problem(client, name, request_kwargs, status):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    response = client.post("/predict", **request_kwargs)
    assert response.status_code == status, (name, response.text)
    assert response.json()["error"]
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 100, name  # a bomb is refused before its pixels are decoded


def test_ten_thousand_parts_are_refused(client):
    body, content_type = _many_parts(10_000)
    response = client.post("/predict", content=body, headers={"content-type": content_type})
    assert response.status_code == 400 and "error" in response.json()


def test_a_path_in_the_filename_is_only_a_label(client, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    response = client.post("/predict", files={"file": ("../../x.png", _digit_png())})
    assert response.status_code == 200
    assert response.json()["predictions"][0]["input"] == "../../x.png"
    assert list(tmp_path.iterdir()) == [] and not (tmp_path.parent.parent / "x.png").exists()


def test_body_limits_declared_and_chunked(digits_run):
    with TestClient(create_app(digits_run.path, max_upload_mb=0.001)) as small:
        big = bytes(5_000)
        declared = small.post("/predict", content=big)
        assert declared.status_code == 413 and "larger than" in declared.json()["error"]
        chunked = small.post("/predict", content=(big[i:i + 500] for i in range(0, 5_000, 500)))
        assert chunked.status_code == 413 and "larger than" in chunked.json()["error"]


def test_a_full_queue_answers_503_with_retry_after(digits_run):
    with TestClient(create_app(digits_run.path, max_queue=2)) as small:
        files = [("file", (f"{i}.png", _digit_png(i))) for i in range(3)]
        response = small.post("/predict", files=files)
        assert response.status_code == 503 and response.headers["retry-after"] == "1"


@contextmanager
def serving(model, *flags):
    """`cnnlab serve` as a user starts it, on a free port; stopped afterwards."""
    with server_process(model, *flags) as (url, _):
        yield url


@contextmanager
def server_process(model, *flags):
    """The URL of a `cnnlab serve` on a free port, and its process (to read its memory)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "cnnlab", "serve", str(model), "--port",
                                str(port), *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if process.poll() is not None:
                raise AssertionError(process.stderr.read())
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_real_server_under_concurrent_load_answers_200_or_503(digits_run):
    import asyncio

    async def hammer(url: str) -> list[int]:
        async with httpx.AsyncClient(timeout=60) as session:
            async def one(i: int) -> int:
                files = {"file": (f"{i}.png", _digit_png(i % 10))}
                return (await session.post(f"{url}/predict", files=files)).status_code

            return await asyncio.gather(*(one(i) for i in range(120)))

    with serving(digits_run.path, "--max-queue", "16") as url:
        statuses = asyncio.run(hammer(url))
        page = httpx.get(url)
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 16
    assert page.status_code == 200 and "<title>cnnlab</title>" in page.text


def test_a_port_in_use_is_one_line_and_exit_code_2(digits_run):
    with serving(digits_run.path) as url:
        port = url.rsplit(":", 1)[1]
        second = subprocess.run([sys.executable, "-m", "cnnlab", "serve", str(digits_run.path),
                                 "--port", port], capture_output=True, text=True, timeout=300)
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200  # the first one serves on
    assert second.returncode == 2 and second.stdout == ""
    assert second.stderr.count("\n") == 1 and f"cannot serve at 127.0.0.1:{port}" in second.stderr


@pytest.fixture(scope="module")
def flowers_run(flowers12, tmp_path_factory):
    """A linear probe on EfficientNet-Lite0 features: two species, real photos."""
    data = photo_slice(flowers12, tmp_path_factory.mktemp("flowers"), ["daisy", "sunflower"], 20, 5)
    return cnnlab.train(data={"name": str(data), "image_size": 128}, model="timm:efficientnet_lite0",
                        pretrained=True, freeze="backbone", quiet=True,
                        out=str(tmp_path_factory.mktemp("runs") / "flowers"))


@pytest.mark.slow  # minutes of the plain suite: run with -m slow, as CI does
def test_the_page_in_a_real_browser(flowers_run, flowers12, tmp_path):
    """Chromium drives the page as a person would: a photo in, class bars and the overlay out; a
    text file in, a message out. In CI the browser must be there (scripts/setup.sh installs it)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    photo = sorted((flowers12 / "test" / "sunflower").iterdir())[0]
    text = tmp_path / "notes.txt"
    text.write_text("not a photo")
    with serving(flowers_run.path) as url:
        browser = headless_chromium()
        try:
            browser.get(url)
            wait = WebDriverWait(browser, 60)
            wait.until(lambda b: "2 classes" in b.find_element(By.ID, "model").text)
            browser.find_element(By.ID, "file").send_keys(str(photo))
            wait.until(seen.visibility_of_element_located((By.CSS_SELECTOR, "#top li")))
            names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#top .class-name")]
            assert names[0] == "sunflower"
            wait.until(lambda b: b.execute_script(
                "const i = document.getElementById('overlay'); return i.complete && i.naturalWidth"))
            browser.save_screenshot(str(tmp_path / "page.png"))
            browser.find_element(By.ID, "file").send_keys(str(text))
            wait.until(seen.visibility_of_element_located((By.ID, "error")))
            assert "not an image" in browser.find_element(By.ID, "error").text
        finally:
            browser.quit()


def _png(side: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((side, side), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def served(digits_run):
    from fastapi.testclient import TestClient

    from cnnlab.serve.app import create_app

    app = create_app(digits_run.path)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, app


@pytest.mark.parametrize("query", ["topk=%C2%B2", "topk=" + "9" * 5000, "target=%C2%B2"])
def test_odd_query_values_are_a_json_400(served, query):
    client, _ = served
    path = "/explain" if query.startswith("target") else "/predict"
    response = client.post(f"{path}?{query}", content=_png())
    assert response.status_code in (400, 422) and "error" in response.json()


def test_an_unexpected_error_is_json_and_counted(served, monkeypatch):
    client, app = served
    monkeypatch.setattr(app.state.service.predictor, "top",
                        lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    response = client.post("/predict", content=_png())
    assert response.status_code == 500 and "error" in response.json()
    assert 'cnnlab_requests_total{path="/predict",status="500"} 1.0' in client.get("/metrics").text
