"""A real `cnnlab serve` against clients that misbehave at the connection level (slow-loris headers,
bodies that never end, huge headers, more connections than the cap) and a model that is too slow:
each one is cut off or answered, and everyone else is still served."""

import io
import os
import select
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from .test_serve import _digit_png, server_process, serving


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def _closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> float | None:
    """Seconds until the server closes `sock` (sending `trickle` every quarter second meanwhile),
    or None if it is still open after `seconds`."""
    started = time.monotonic()
    sock.settimeout(0.25)
    while time.monotonic() - started < seconds:
        try:
            if trickle:
                sock.sendall(trickle)
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:  # reset or broken pipe: closed as well
            return time.monotonic() - started
    return None


def _rss_mb(process: subprocess.Popen) -> float:
    with open(f"/proc/{process.pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def _answer(sock: socket.socket) -> bytes:
    sock.settimeout(30)
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def test_a_slow_loris_is_cut_off_while_others_are_served(digits_run):
    with serving(digits_run.path, "--header-timeout", "1") as url:
        silent = _connect(url)
        loris = _connect(url)
        loris.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        during = httpx.post(f"{url}/predict", files={"file": ("3.png", _digit_png(3))}, timeout=30)
        cut_after = _closed_within(loris, 30, trickle=b"a")
        assert during.status_code == 200 and during.json()["predictions"]
        assert cut_after is not None, "a header sent a byte at a time was never cut off"
        assert _closed_within(silent, 30) is not None, "a connection that sent nothing stays"
        assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
    assert 'cnnlab_dropped_connections_total{reason="header_timeout"} 2.0' in metrics


def test_a_body_that_does_not_come_is_answered_408(digits_run):
    with serving(digits_run.path, "--body-timeout", "1") as url:
        slow = _connect(url)
        slow.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\ncontent-type: image/png\r\n"
                     b"content-length: 1000\r\n\r\nabc")
        answer = _answer(slow)
        # a body nobody reads (the 405 went out before it) is cut off a little later
        unread = _connect(url)
        unread.sendall(b"POST /model HTTP/1.1\r\nHost: x\r\ncontent-length: 1000000\r\n\r\n")
        cut_after = _closed_within(unread, 60, trickle=b"a")
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
    assert answer.startswith(b"HTTP/1.1 408") and b'"error":"the request body did not arrive' in answer
    assert cut_after is not None
    assert 'cnnlab_requests_total{path="/predict",status="408"} 1.0' in metrics
    assert 'cnnlab_dropped_connections_total{reason="body_timeout"} 1.0' in metrics


def test_headers_over_the_cap_get_431_and_cost_no_memory(digits_run):
    with server_process(digits_run.path, "--max-header-kb", "8") as (url, process):
        before = _rss_mb(process)
        one_packet = _connect(url)
        one_packet.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 +
                           b"\r\n\r\n")
        answer = _answer(one_packet)
        endless = _connect(url)
        endless.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        sent = 0
        try:
            while sent < 64 * 1024**2:  # a header that never ends, 64 MB of it
                endless.sendall(b"a" * 65536)
                sent += 65536
            endless_answer = _answer(endless)
        except OSError:  # closed while still sending: refused as well
            endless_answer = b""
        grown = _rss_mb(process) - before
        assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200
    assert answer.startswith(b"HTTP/1.1 431") and b"larger than the 8 kB allowed" in answer
    assert endless_answer == b"" or endless_answer.startswith(b"HTTP/1.1 431")
    assert grown < 50, f"the server grew by {grown:.0f} MB"


@pytest.fixture(scope="module")
def capped(digits_run):
    """A server that holds four connections at most, with time to spare for slow headers."""
    with server_process(digits_run.path, "--max-connections", "4", "--header-timeout", "60") as up:
        yield up


def test_connections_that_never_send_headers_cannot_lock_others_out(capped):
    url, process = capped
    before = _open_files(process)
    flood = [_connect(url) for _ in range(40)]
    for sock in flood:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Never-Ends: ")
    during = httpx.post(f"{url}/predict", files={"file": ("3.png", _digit_png(3))}, timeout=30)
    closed = _count_closed(flood, at_least=40 - 4, seconds=30)
    held = _open_files(process) - before
    for sock in flood:
        sock.close()
    metrics = httpx.get(f"{url}/metrics", timeout=30).text
    assert during.status_code == 200
    assert closed >= 40 - 4 and held <= 4 + 2, (closed, held)
    assert 'cnnlab_dropped_connections_total{reason="evicted"}' in metrics


def test_when_every_connection_has_a_request_a_new_one_gets_503(capped):
    url, _ = capped
    uploading = [_connect(url) for _ in range(4)]
    for sock in uploading:  # requests in progress: the app asks for their bodies, still to come
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\ncontent-type: image/png\r\n"
                     b"content-length: 1000\r\nexpect: 100-continue\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
    refused = httpx.get(f"{url}/healthz", timeout=30)
    for sock in uploading:
        sock.close()
    after = _eventually_ok(f"{url}/healthz")
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "too many connections" in refused.json()["error"]
    assert after.status_code == 200


def _open_files(process: subprocess.Popen) -> int:
    return len(os.listdir(f"/proc/{process.pid}/fd"))


def _count_closed(socks: list[socket.socket], at_least: int, seconds: float) -> int:
    """How many of `socks` the server closes, waiting until `at_least` are or time is up."""
    open_ones, closed = list(socks), 0
    started = time.monotonic()
    while closed < at_least and open_ones and time.monotonic() - started < seconds:
        readable, _, _ = select.select(open_ones, [], [], 0.25)
        for sock in readable:
            try:
                ended = sock.recv(4096) == b""
            except OSError:
                ended = True
            if ended:
                open_ones.remove(sock)
                closed += 1
    return closed


def _eventually_ok(url: str) -> httpx.Response:
    """The server drops closed connections from its count as it notices them."""
    for _ in range(100):
        response = httpx.get(url, timeout=30)
        if response.status_code == 200:
            break
        time.sleep(0.1)
    return response


def test_a_request_past_its_deadline_gets_504(digits_run):
    with serving(digits_run.path, "--request-timeout", "0.001") as url:
        # the batcher alone waits --max-wait-ms (5 ms) for company, past the 1 ms deadline
        predicted = httpx.post(f"{url}/predict", files={"file": ("3.png", _digit_png(3))},
                               timeout=30)
        explained = httpx.post(f"{url}/explain", files={"file": ("3.png", _digit_png(3))},
                               timeout=30)
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
    assert predicted.status_code == 504 and "deadline" in predicted.json()["error"]
    assert explained.status_code in (200, 504)  # no 500; a fast machine may explain in 1 ms
    assert 'cnnlab_requests_total{path="/predict",status="504"} 1.0' in metrics


def _photos(count: int) -> list:
    rng = np.random.default_rng(0)
    files = []
    for index in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)).save(buffer, format="PNG")
        files.append(("file", (f"{index}.png", buffer.getvalue())))
    return files


def test_healthz_says_so_while_the_model_is_stuck():
    """EfficientNet-Lite0 on one thread takes a second or more for 64 images (resized to
    224x224): one forward pass far longer than the 0.2 s deadline, as a hung model's would be."""
    with serving("pretrained:efficientnet_lite0", "--threads", "1", "--max-batch", "64",
                 "--request-timeout", "0.2") as url:
        answers = []
        slow = threading.Thread(target=lambda: answers.append(
            httpx.post(f"{url}/predict", files=_photos(64), timeout=300)))
        slow.start()
        health = _health_until(url, 503)
        slow.join()
        recovered = _health_until(url, 200)
    assert answers[0].status_code == 504
    assert health.status_code == 503 and health.json()["status"] == "stuck"
    assert "past the 0.2 s request deadline" in health.json()["error"]
    assert recovered.status_code == 200


def _health_until(url: str, status: int) -> httpx.Response:
    for _ in range(600):
        health = httpx.get(f"{url}/healthz", timeout=30)
        if health.status_code == status:
            break
        time.sleep(0.1)
    return health


@pytest.mark.parametrize("name", ["pretrained:hf-hub:org/name", "pretrained:org/name"])
def test_serve_refuses_a_model_from_the_hub(name):
    refused = subprocess.run([sys.executable, "-m", "cnnlab", "serve", name],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "Hugging Face hub" in refused.stderr


def test_probabilities_that_are_not_numbers_are_a_json_error_never_nan(digits_run, tmp_path):
    from fastapi.testclient import TestClient

    from cnnlab.serve.app import create_app

    from .test_predict import overflowing_run

    run = overflowing_run(digits_run, tmp_path / "run")
    with TestClient(create_app(run, unknown=False), raise_server_exceptions=False) as client:
        answer = client.post("/predict", files=[("file", ("zero.png", _digit_png()))])
        assert answer.status_code == 500
        assert "not finite numbers" in answer.json()["error"] and "NaN" not in answer.text
        assert client.get("/healthz").status_code == 200  # the server goes on
