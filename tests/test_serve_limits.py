"""An over-limit upload from Python's own clients gets the 413 and its message, not a broken pipe:
the server reads and discards the body (up to a bound) before it answers."""

import json
import urllib.error
import urllib.request

import pytest

from .test_serve import serving

BODY = b"\0" * (20 * 1024**2)  # twice the default --max-upload-mb


@pytest.fixture(scope="module")
def server(digits_run):
    with serving(digits_run.path) as url:
        yield url


def test_requests_sees_the_413_and_its_message(server):
    requests = pytest.importorskip("requests")
    declared = requests.post(f"{server}/predict", files={"file": ("big.png", BODY, "image/png")},
                             timeout=60)
    assert declared.status_code == 413 and "larger than" in declared.json()["error"]
    chunked = requests.post(f"{server}/predict", data=iter([BODY[:2**20]] * 20),
                            headers={"content-type": "image/png"}, timeout=60)
    assert chunked.status_code == 413 and "larger than" in chunked.json()["error"]


def test_urllib_sees_the_413_and_its_message(server):
    request = urllib.request.Request(f"{server}/predict", data=BODY, method="POST",
                                     headers={"content-type": "image/png"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 413
    assert "larger than" in json.loads(refused.value.read())["error"]
