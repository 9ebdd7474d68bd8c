"""Predict: any image mode and size, bad files named, folders, globs, video frames, JSON/CSV; Python
arrays and tensors checked as pixels; names that are not UTF-8 written escaped."""

import csv
import io
import json
import os
import subprocess
import sys

import av
import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.base.errors import CnnlabError
from cnnlab.cli import main
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


@pytest.mark.parametrize(("array", "message"), [
    (np.full((8, 8), np.nan), "NaN or infinite"),
    (np.full((8, 8), 300.0), r"must be in \[0, 1\] or 0\.\.255"),
    (np.full((8, 8), -1.0), r"got -1\.\.-1"),
    (np.zeros((0, 0)), "not empty"),
])
def test_python_arrays_that_are_not_images_are_refused(digits_run, array, message):
    with pytest.raises(CnnlabError, match=message):
        cnnlab.load(digits_run.path).predict(array)


def test_python_arrays_in_0_to_255_are_pixels_not_white(digits_run):
    from sklearn.datasets import load_digits

    image = load_digits().images[0] * (255 / 16)  # float64 in 0..255
    predictor = cnnlab.load(digits_run.path)
    as_float = predictor.predict(image)[0][0]
    as_uint8 = predictor.predict(image.round().astype(np.uint8))[0][0]
    assert as_float.index == as_uint8.index == 0
    assert as_float.probability == pytest.approx(as_uint8.probability, abs=1e-6)
    with pytest.raises(CnnlabError, match="topk must be at least 1"):
        predictor.predict(image, topk=-1)


def test_a_numpy_batch_is_predicted_like_a_list(digits_run):
    from sklearn.datasets import load_digits

    batch = (load_digits().images[:3] * (255 / 16)).round().astype(np.uint8)[..., None]  # N, H, W, C
    predictor = cnnlab.load(digits_run.path)
    assert [top[0].index for top in predictor.predict(batch)] == \
        [top[0].index for top in predictor.predict(list(batch))]


@pytest.mark.parametrize(("value", "message"), [
    (float("nan"), "NaN or infinite"), (200.0, "values from 200 to 200"),
    (-5.0, "values from -5 to -5"),
])
def test_tensors_outside_the_pixel_range_are_refused(digits_run, value, message):
    model = cnnlab.load(digits_run.path)
    tensor = torch.full(model.card.input.shape, value)
    with pytest.raises(CnnlabError, match=message):
        model.predict(tensor)


def test_a_tensor_of_another_size_is_resized_as_an_array_is(digits_run):
    import numpy as np
    import torch
    from sklearn.datasets import load_digits

    predictor = cnnlab.load(digits_run.path)
    digit = np.kron((load_digits().images[3] * (255 / 16)).astype(np.uint8), np.ones((3, 3),
                                                                                   np.uint8))
    as_array = predictor.probabilities(predictor.preprocess(digit)[None])  # (24, 24)
    for tensor in (torch.from_numpy(digit)[None], torch.from_numpy(digit)[None].float() / 255):
        assert torch.equal(predictor.probabilities(predictor.preprocess(tensor)[None]), as_array)
    assert predictor.predict(torch.from_numpy(digit)[None])[0][0].probability == \
        pytest.approx(float(as_array.max()), abs=1e-6)
    with pytest.raises(CnnlabError, match=r"an image \(C, H, W\) with 1, 3 or 4 channels"):
        predictor.preprocess(torch.rand(5, 10, 10))


def test_a_batch_size_below_one_is_refused(digits_run):
    with pytest.raises(CnnlabError, match="batch_size must be at least 1, got -1"):
        cnnlab.load(digits_run.path).predict(np.zeros((8, 8), np.uint8), batch_size=-1)


def test_a_long_thin_file_is_predicted_among_others(digits_run, tmp_path):
    strip = tmp_path / "strip.png"
    Image.fromarray(np.full((1, 2_000_000), 200, np.uint8)).save(strip)
    assert strip.stat().st_size < 100_000
    normal = tmp_path / "normal.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(normal)
    results = cnnlab.load(digits_run.path).predict([str(strip), str(normal)])
    assert len(results) == 2 and all(r[0].probability > 0 for r in results)


def test_predict_takes_the_format_from_the_out_files_extension(digits_run, tmp_path, capsys):
    image = str(digits_run.path / "curves.png")
    assert main(["predict", str(digits_run.path), image, "--out", str(tmp_path / "p.json")]) == 0
    assert json.loads((tmp_path / "p.json").read_text())[0]["input"] == image
    assert main(["predict", str(digits_run.path), image, "--out", str(tmp_path / "p.txt")]) == 2
    assert main(["predict", str(digits_run.path), str(tmp_path / "nothere.png")]) == 2
    err = capsys.readouterr().err
    assert "name a .json or .csv file" in err and "nothere.png: no such file or folder" in err


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


def test_a_prediction_is_its_top_classes_and_carries_the_detectors_verdict(digits_run):
    from cnnlab.run.folder import read_card
    from cnnlab.run.prediction import Prediction, UnknownVerdict

    spec = read_card(digits_run.path).unknown
    noise = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
    for prediction in cnnlab.load(digits_run.path).predict([_digit(4)[0], noise], topk=3):
        assert isinstance(prediction, Prediction) and prediction.input is None  # arrays: no name
        assert list(prediction) == prediction.top and len(prediction) == 3
        assert prediction[0] is prediction.top[0] and prediction[1:] == prediction.top[1:]
        verdict = prediction.unknown
        assert isinstance(verdict, UnknownVerdict)
        assert (verdict.threshold, verdict.score_name) == (spec.threshold, spec.score)
        assert verdict.known == (verdict.score >= spec.threshold) == prediction.known
        assert prediction.score == prediction.unknown_score == verdict.score


def test_every_key_of_a_prediction_has_its_csv_column():
    from cnnlab.predict.formats import CSV_FIRST, CSV_OWN, predictions_csv
    from cnnlab.run.prediction import (
        CLASS_KEYS,
        PREDICTION_KEYS,
        ClassScore,
        Prediction,
        UnknownVerdict,
    )

    top = [ClassScore("cat", 3, 0.75), ClassScore("dog", 1, 0.25)]
    odd = UnknownVerdict.judged(float("nan"), True, -1.5, "energy")
    every = Prediction("clip.mp4", top, odd, frame=4, time=0.5, frames=7, accepted=False)
    row = every.to_dict()
    assert [key for key in row if key != "top"] == list(PREDICTION_KEYS)  # to_dict's own order
    assert list(row["top"][0]) == list(CLASS_KEYS)
    rows = list(csv.DictReader(io.StringIO(predictions_csv([every]))))
    assert [int(r["rank"]) for r in rows] == [1, 2] and [r["class"] for r in rows] == ["cat", "dog"]
    assert all(r.keys() == {*CSV_FIRST, *PREDICTION_KEYS} - set(CSV_OWN) | {"input", "frame", "time"}
               for r in rows)
    assert rows[0]["frame"] == "clip" and rows[0]["known"] == "False" and rows[0]["unknown_score"] == ""
    assert rows[1]["known"] == "" and rows[1]["accepted"] == ""  # the prediction's fields: on rank 1


@pytest.mark.parametrize("score", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_unknown_score_is_never_known_and_written_as_null(digits_run, score):
    from cnnlab.predict.formats import predictions_json

    predictor = cnnlab.load(digits_run.path)
    real = predictor.detector
    broken = type("Broken", (), {"spec": real.spec, "needs_features": False, "known": real.known,
                                 "score": lambda self, logits, _: torch.full((len(logits),), score)})
    predictor.detector = broken()
    [prediction] = predictor.predict(_digit(0)[0])
    assert prediction.known is False  # +inf passes the threshold, yet vouches for nothing
    [row] = json.loads(predictions_json([prediction]))  # allow_nan=False: would raise on NaN
    assert row["known"] is False and row["unknown_score"] is None and "not a finite" in \
        row["unknown_reason"]


def _cnnlab_imports(source: str) -> list[str]:
    """The cnnlab modules a module of cnnlab/run/ imports, named from the package: "run.engine"."""
    import ast

    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            base = {0: "", 1: "run.", 2: ""}.get(node.level, "")
            names.append((base + (node.module or "")).removeprefix("cnnlab."))
        elif isinstance(node, ast.Import):
            names += [alias.name.removeprefix("cnnlab.") for alias in node.names]
    return names


def test_the_run_room_imports_no_stage():
    """Predictor and its answers live below the stages that use them (predict, serve, explain):
    nothing in the run room imports from a stage."""
    from pathlib import Path

    import cnnlab.run

    upward = [f"{path.name}: {module}"
              for path in sorted(Path(cnnlab.run.__file__).parent.glob("*.py"))
              for module in _cnnlab_imports(path.read_text())
              if module.split(".")[0] in ("predict", "serve", "explain")]
    assert upward == []


def overflowing_run(digits_run, target):
    """A copy of the digits run whose weights are finite but so large that its logits overflow
    to infinity, and its softmax gives NaN; saved as training saves weights (checksums agree)."""
    import shutil

    from cnnlab.run.folder import load_model, save_model

    shutil.copytree(digits_run.path, target, ignore=shutil.ignore_patterns("engine", "export*"))
    model, card = load_model(target)
    with torch.no_grad():
        model.output_layer.weight.fill_(3e38)
    save_model(target, model, card)
    return target


def test_probabilities_that_are_not_numbers_are_one_line_never_nan_in_json(digits_run, tmp_path):
    from .helpers import digit_png, error_line

    run = overflowing_run(digits_run, tmp_path / "run")
    image = digit_png(tmp_path / "zero.png")
    for flags in (["--format", "json"], ["--out", str(tmp_path / "answers.json")], []):
        done = cnnlab_cli("predict", str(run), str(image), "--no-unknown", *flags)
        assert done.returncode == 2 and "nan" not in done.stdout.lower()
        assert "not finite numbers" in error_line(done.stderr) and str(image) in done.stderr
    assert not (tmp_path / "answers.json").exists()
