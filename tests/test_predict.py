"""Predict: any image mode and size, bad files named, folders, globs, video frames, JSON/CSV."""

import csv
import io
import json
import subprocess
import sys

import av
import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.predict.predictor import expand_inputs, predict_files, predict_video

from .helpers import MODES, make_shape_folder, save_in_mode, shape_image


def cnnlab_cli(*args):
    return subprocess.run([sys.executable, "-m", "cnnlab", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def rgb_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rgb") / "run"
    return cnnlab.train(data={"name": "digits", "channels": 3, "image_size": 16}, epochs=1,
                        out=str(out), quiet=True)


def _digit(index=0) -> np.ndarray:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images[index] * (255 / 16)).astype(np.uint8), int(digits.target[index])


@pytest.mark.parametrize("mode", MODES)
def test_every_image_mode_predicts(tmp_path, digits_run, rgb_run, mode):
    path = save_in_mode(shape_image("square", seed=3), mode, tmp_path / "image.png")
    for run in (digits_run, rgb_run):
        top = cnnlab.load(run.path).predict(path, topk=3)[0]
        assert len(top) == 3 and 0 <= top[0].probability <= 1


def test_huge_rgba_on_a_small_gray_model_and_gray_on_rgb(tmp_path, digits_run, rgb_run):
    array, _ = _digit(5)
    big = tmp_path / "big.png"
    Image.fromarray(array).resize((4000, 3000)).convert("RGBA").save(big)
    gray = tmp_path / "gray.jpg"
    Image.fromarray(array).resize((64, 64)).save(gray)
    assert cnnlab.load(digits_run.path).predict(big)[0][0].probability > 0
    assert cnnlab.load(rgb_run.path).predict(gray)[0][0].probability > 0


def test_predictions_are_right_on_real_digits(digits_run, tmp_path):
    predictor = cnnlab.load(digits_run.path)
    paths, labels = [], []
    for i in range(1700, 1797):  # the end of the set, as image files
        array, label = _digit(i)
        Image.fromarray(array).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
        labels.append(label)
    results = list(predict_files(predictor, paths, topk=1, batch_size=32, workers=2))
    assert len(results) == len(paths)
    by_path = {r.input: r.top[0].index for r in results}
    accuracy = np.mean([by_path[str(p)] == y for p, y in zip(paths, labels, strict=True)])
    assert accuracy > 0.7  # (some of these were training images; a broken path would give ~0.1)


def test_bad_files_are_named_and_the_rest_predicted(tmp_path, digits_run):
    array, _ = _digit(0)
    Image.fromarray(array).save(tmp_path / "good.png")
    (tmp_path / "text.png").write_text("hello")
    full = (tmp_path / "good.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(full[: len(full) // 2])
    (tmp_path / "doc.gif").write_bytes(b"%PDF-1.4")
    result = cnnlab_cli("predict", str(digits_run.path), str(tmp_path), "missing.jpg",
                        "--format", "json")
    assert result.returncode == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 4
    for name in ("text.png", "truncated.png", "doc.gif", "missing.jpg"):
        assert sum(name in line for line in errors) == 1
    predicted = json.loads(result.stdout)
    assert [row["input"] for row in predicted] == [str(tmp_path / "good.png")]


def test_globs_folders_and_csv_output(tmp_path, digits_run):
    for i in range(3):
        Image.fromarray(_digit(i)[0]).save(tmp_path / f"d{i}.png")
    (tmp_path / "nested").mkdir()
    Image.fromarray(_digit(3)[0]).save(tmp_path / "nested" / "d3.bmp")
    found = expand_inputs([str(tmp_path / "d*.png"), str(tmp_path / "nested")])
    assert len(found.images) == 4 and not found.missing
    out = tmp_path / "predictions.csv"
    result = cnnlab_cli("predict", str(digits_run.path), str(tmp_path), "--topk", "2", "--out",
                        str(out))  # the format comes from the extension
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 4 * 2
    assert {row["rank"] for row in rows} == {"1", "2"}
    assert all(0 <= float(row["probability"]) <= 1 for row in rows)


def _write_video(path, frames, fps=10):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for array in frames:
            image = Image.fromarray(array).resize((32, 32)).convert("RGB")
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_video_frames_and_clip_label(tmp_path, digits_run):
    array, _ = _digit(0)
    video = tmp_path / "clip.mp4"
    _write_video(video, [array] * 30)  # 3 seconds at 10 fps
    predictor = cnnlab.load(digits_run.path)
    frames, clip = predict_video(predictor, video, fps=2, topk=3)
    assert [f.time for f in frames] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    assert clip.frames == 6
    single = predictor.predict(torch.from_numpy(array)[None].float() / 255, topk=1)[0][0]
    assert clip.top[0].index == single.index  # the same picture every frame: the same label
    result = cnnlab_cli("predict", str(digits_run.path), str(video), "--fps", "1",
                        "--format", "json")
    rows = json.loads(result.stdout)
    assert len(rows) == 4 and rows[-1]["frames"] == 3


def test_unreadable_video_is_a_failure(tmp_path, digits_run):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    result = cnnlab_cli("predict", str(digits_run.path), str(bad))
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {bad}: cannot read the video")


def test_python_inputs_agree(digits_run):
    predictor = cnnlab.load(digits_run.path)
    array, _ = _digit(7)
    as_array = predictor.predict(array)[0][0]
    as_pil = predictor.predict(Image.fromarray(array))[0][0]
    as_tensor = predictor.predict(torch.from_numpy(array)[None])[0][0]
    assert as_array.index == as_pil.index == as_tensor.index
    assert as_array.probability == pytest.approx(as_tensor.probability, abs=1e-6)


def test_flip_tta_averages_an_image_and_its_mirror_image(tmp_path):
    make_shape_folder(tmp_path / "shapes", per_class=20)
    run = cnnlab.train(data=str(tmp_path / "shapes"), epochs=1, tta=True, quiet=True,
                       out=str(tmp_path / "tta"))
    predictor = cnnlab.load(run.path)
    assert predictor.card.flip_tta and predictor.model.flip_tta
    images = torch.rand(4, *predictor.input_shape)
    with_tta = predictor.probabilities(images)
    assert torch.allclose(with_tta, predictor.probabilities(images.flip(-1)), atol=1e-5)
    predictor.model.flip_tta = False
    plain = (predictor.probabilities(images) + predictor.probabilities(images.flip(-1))) / 2
    assert torch.allclose(with_tta, plain, atol=1e-5)
    # digits forbid flips: the setting is dropped there rather than mirroring a 2 into a 5-like shape
    digits = cnnlab.train(data="digits", epochs=1, tta=True, quiet=True, out=str(tmp_path / "d"))
    assert cnnlab.load(digits.path).card.flip_tta is False
