"""The hostile and unlucky cases of the third reliability sweep: each is refused in one line or
handled, and nothing wrong is saved or loaded."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import cnnlab
from cnnlab.base.errors import CnnlabError
from cnnlab.base.fileio import sha256_of
from cnnlab.cli import main
from cnnlab.data import images
from cnnlab.run import folder

from .helpers import make_folder


@pytest.fixture
def run_copy(digits_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(digits_run.path, target)
    return target


def _one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def _card(run) -> dict:
    return json.loads((run / "model.json").read_text())


def _write_card(run, values: dict) -> None:
    (run / "model.json").write_text(json.dumps(values))


# 1. Long thin images: the work is bounded by the model's input, not by the aspect ratio.

def test_a_long_thin_image_is_resized_without_growing_to_its_aspect_ratio(monkeypatch):
    strip = Image.fromarray((np.arange(2_000_000) % 251).astype(np.uint8)[None, :])  # 2,000,000x1
    sizes = []
    resize = Image.Image.resize
    monkeypatch.setattr(Image.Image, "resize",
                        lambda self, size, *a, **k: sizes.append(size) or resize(self, size, *a, **k))
    out = images.resize_center_crop(strip, 224, 224)
    assert out.size == (224, 224)
    assert max(w * h for w, h in sizes) <= 16 * 224 * 224


def test_a_long_thin_file_is_predicted_among_others(digits_run, tmp_path):
    strip = tmp_path / "strip.png"
    Image.fromarray(np.full((1, 2_000_000), 200, np.uint8)).save(strip)
    assert strip.stat().st_size < 100_000
    normal = tmp_path / "normal.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(normal)
    results = cnnlab.load(digits_run.path).predict([str(strip), str(normal)])
    assert len(results) == 2 and all(r[0].probability > 0 for r in results)


def test_ordinary_images_are_resized_as_before():
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64), np.uint8))
    scale = 24 / 48
    covered = photo.resize((round(64 * scale), 24), Image.Resampling.BILINEAR)
    left = (covered.width - 24) // 2
    expected = np.asarray(covered.crop((left, 0, left + 24, 24)))
    assert np.array_equal(np.asarray(images.resize_center_crop(photo, 24, 24)), expected)


# 2. A kill between a file and its checksum: the pair stays loadable.

def test_a_kill_between_weights_and_checksum_leaves_a_model_that_loads(run_copy, monkeypatch):
    model, card = folder.load_model(run_copy)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)  # a newer epoch's weights

    def killed(path, digests):  # the process dies before the record loses the old digest
        if len(digests) == 1:
            raise KeyboardInterrupt
        real(path, digests)

    real = folder._write_record
    monkeypatch.setattr(folder, "_write_record", killed)
    with pytest.raises(KeyboardInterrupt):
        folder.save_model(run_copy, model, card)
    monkeypatch.undo()
    assert len(folder.recorded_digests(run_copy / "model.safetensors")) == 2
    loaded, _ = folder.load_model(run_copy)
    assert torch.equal(next(loaded.parameters()), next(model.parameters()))


def test_a_kill_between_weights_and_model_json_leaves_a_model_that_loads(run_copy, monkeypatch):
    model, card = folder.load_model(run_copy)
    real = folder.atomic_write_text

    def killed(path, text):
        if path.name == "model.json":
            raise KeyboardInterrupt
        return real(path, text)

    monkeypatch.setattr(folder, "atomic_write_text", killed)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    with pytest.raises(KeyboardInterrupt):
        folder.save_model(run_copy, model, card)
    monkeypatch.undo()
    loaded, _ = folder.load_model(run_copy)
    assert torch.equal(next(loaded.parameters()), next(model.parameters()))


def test_a_kill_before_the_checkpoint_is_replaced_keeps_the_old_one(run_copy, monkeypatch):
    before = (run_copy / "last.ckpt").read_bytes()
    monkeypatch.setattr(folder, "atomic_write", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        folder.save_checkpoint(run_copy / "last.ckpt", {"epoch": 99})
    monkeypatch.undo()
    assert (run_copy / "last.ckpt").read_bytes() == before
    assert folder.load_checkpoint(run_copy / "last.ckpt")  # its record still accepts it
    folder.save_checkpoint(run_copy / "last.ckpt", {"epoch": 99})
    assert folder.recorded_digests(run_copy / "last.ckpt") == \
        [sha256_of(run_copy / "last.ckpt")]


# 3. Non-finite batch-norm statistics are never saved.

def test_infinite_batch_norm_statistics_are_not_saved_nor_resumed(tmp_path, capsys):
    out = tmp_path / "bn"
    args = ["train", "--data", "digits", "--model", "simple", "--epochs", "1", "--image-size", "8",
            "--lr", "50", "--optimizer", "sgd", "--ema", "0", "--out", str(out), "--quiet"]
    main(args)
    assert json.loads((out / "results.json").read_text())["status"] == "diverged"
    for name in ("model.safetensors", "last.ckpt"):
        if (out / name).exists():
            state = load_file(out / name) if name.endswith("safetensors") else \
                folder.load_checkpoint(out / name)["model"]
            assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    main(["train", "--resume", str(out), "--quiet"])
    assert json.loads((out / "results.json").read_text())["status"] == "diverged"
    assert not (out / "model.safetensors").exists() and not (out / "last.ckpt").exists()


# 7. model.json's values are checked where it is read, and the card is bound to its weights.

@pytest.mark.parametrize(("change", "message"), [
    ({"interpolation": "evil"}, "unknown interpolation 'evil'"),
    ({"crop_pct": 0}, "crop_pct must be a number >= 0.05 and <= 1, got 0.0"),
    ({"crop_pct": 1e-6}, "crop_pct must be"),
    ({"crop_pct": -1}, "crop_pct must be"),
    ({"std": [0.0]}, "std positive"),
])
def test_bad_preprocessing_values_are_one_line(run_copy, capsys, change, message):
    card = _card(run_copy)
    card["preprocessing"].update(change)
    _write_card(run_copy, card)
    assert main(["predict", str(run_copy), str(run_copy / "curves.png")]) == 2
    assert message in _one_error_line(capsys)


def test_duplicated_or_reordered_class_names_are_refused(run_copy):
    card = _card(run_copy)
    names = card["class_names"]
    _write_card(run_copy, {**card, "class_names": [names[0], *names[:-1]]})
    with pytest.raises(CnnlabError, match="name a class twice"):
        cnnlab.load(run_copy)
    _write_card(run_copy, {**card, "class_names": [names[1], names[0], *names[2:]]})
    with pytest.raises(CnnlabError, match="class_names differ from the names the weights"):
        cnnlab.load(run_copy)


def test_weights_and_checksum_from_another_run_are_refused(run_copy, tmp_path):
    other = tmp_path / "other"
    cnnlab.train(data="digits", model="simple", epochs=1, seed=1, out=str(other), quiet=True)
    for name in ("model.safetensors", "model.safetensors.sha256"):
        shutil.copy(other / name, run_copy / name)
    with pytest.raises(CnnlabError, match="is not the weights model.json describes"):
        cnnlab.load(run_copy)


def test_a_huge_safetensors_header_is_refused_before_it_is_parsed(run_copy):
    weights = run_copy / "model.safetensors"
    header = json.dumps({"__metadata__": {"pad": "x" * 5_000_000}}).encode()
    weights.write_bytes(len(header).to_bytes(8, "little") + header)
    (run_copy / "model.safetensors.sha256").unlink()
    card = _card(run_copy)
    del card["weights_sha256"]
    _write_card(run_copy, card)
    with pytest.raises(CnnlabError, match="its header claims 5,000,"):
        cnnlab.load(run_copy)


# 9. A FIFO where an image is expected is skipped, never waited on.

@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.png"
    os.mkfifo(path)
    return path


def test_a_fifo_is_not_an_image(digits_run, fifo):
    with pytest.raises(images.ImageReadError, match="not a regular file"):
        images.open_image(fifo)
    with pytest.raises(CnnlabError, match="not a regular file"):
        cnnlab.load(digits_run.path).predict(str(fifo))


@pytest.fixture
def no_hang():
    """Fail a test that would block forever instead of hanging the suite."""
    def stop(*_):
        raise TimeoutError("blocked on a FIFO")
    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_a_fifo_in_a_csv_manifest_is_skipped_and_named(tmp_path, no_hang):
    make_folder(tmp_path, per_class=6, broken=False, modes=["L"])
    rows = [f"{p.relative_to(tmp_path)},{p.parent.name}" for p in sorted(tmp_path.rglob("*.png"))]
    os.mkfifo(tmp_path / "square" / "pipe.png")
    manifest = tmp_path / "data.csv"
    manifest.write_text("\n".join(["square/pipe.png,square", *rows]) + "\n")
    run = cnnlab.train(data=str(manifest), model="simple", epochs=1, image_size=8, workers=0,
                       out=str(tmp_path / "run"), quiet=True)
    assert run.status == "finished" and (tmp_path / "run" / "model.safetensors").is_file()


def test_explain_refuses_a_fifo_in_one_line(digits_run, fifo, capsys, no_hang):
    assert main(["explain", str(digits_run.path), str(fifo), "--method", "saliency",
                 "--out", str(fifo.parent / "x")]) == 2
    assert "not a regular file" in _one_error_line(capsys)


# 10. Settings with one bound, numbers too large for torch, environment limits, batch sizes.

@pytest.mark.parametrize(("args", "message"), [
    (["predict", "RUN", "x.mp4", "--fps", "0"], "--fps must be a number > 0, got 0.0"),
    (["attack", "RUN", "--step-size", "0"], "--step-size must be a number > 0"),
    (["train", "--adv-step-size", "-1"], "--adv-step-size must be a number > 0"),
    (["train", "--seed", str(2**64)], "--seed must be a whole number of at most 19 digits"),
    (["train", "--lr", "1e308"], "--lr must be a number >= 0 and <= 1e+30"),
    (["train", "--workers", "100000"], "--workers must be a number >= 0 and <= 256"),
    (["train", "--threads", "100000"], "--threads must be a number >= 1 and <= 1024"),
])
def test_settings_out_of_range_are_one_line(run_copy, capsys, args, message):
    assert main([str(run_copy) if a == "RUN" else a for a in args]) == 2
    assert message in _one_error_line(capsys)


def test_a_bad_pixel_limit_in_the_environment_is_a_warning_not_a_crash():
    env = {**os.environ, "CNNLAB_MAX_PIXELS": "abc"}
    result = subprocess.run([sys.executable, "-c", "import cnnlab.base.limits as l; "
                             "print(l.MAX_IMAGE_PIXELS)"], env=env, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "50000000"
    assert "CNNLAB_MAX_PIXELS='abc' is not a positive whole number" in result.stderr


def test_a_batch_size_below_one_is_refused(digits_run):
    with pytest.raises(CnnlabError, match="batch_size must be at least 1, got -1"):
        cnnlab.load(digits_run.path).predict(np.zeros((8, 8), np.uint8), batch_size=-1)


# 11. The tensor path of the Python API checks its pixels.

@pytest.mark.parametrize(("value", "message"), [
    (float("nan"), "NaN or infinite"), (200.0, "values from 200 to 200"),
    (-5.0, "values from -5 to -5"),
])
def test_tensors_outside_the_pixel_range_are_refused(digits_run, value, message):
    model = cnnlab.load(digits_run.path)
    tensor = torch.full(model.card.input.shape, value)
    with pytest.raises(CnnlabError, match=message):
        model.predict(tensor)


# 8. File and class names that are not UTF-8 are written escaped, never a crash.

@pytest.fixture
def odd_names(tmp_path):
    root = tmp_path / "odd"
    for split in ("train", "test"):
        for digit in range(10):
            folder = os.fsencode(root / split / str(digit))
            os.makedirs(folder)
            for name in (b"caf\xe9-\xff.png", *(b"plain%d.png" % i for i in range(5))):
                Image.fromarray(np.full((8, 8), digit * 20, np.uint8)).save(folder + b"/" + name)
    return root


def test_predict_and_evaluate_write_names_that_are_not_utf8(digits_run, odd_names, tmp_path):
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(digits_run.path), str(odd_names / "test" / "3"),
                 "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "caf\\udce9-\\udcff.png" in text and "plain0.png" in text
    evaluated = tmp_path / "evaluate"
    assert main(["evaluate", str(digits_run.path), "--data", str(odd_names), "--out",
                 str(evaluated), "--quiet"]) == 0
    assert "\\udcff" in (evaluated / "predictions.csv").read_text(encoding="utf-8")


# 5. Every server error is JSON and counted.

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
