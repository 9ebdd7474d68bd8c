"""Calibrated probabilities and "none of my classes": temperature scaling against scipy's own fit,
the detector fitted with every run and carried by predict, serve's answers, exports and the
Python API, and evaluate --unknown against scikit-learn on independently computed scores."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, logsumexp
from sklearn.metrics import roc_auc_score

import cnnlab
from cnnlab.calibrate.temperature import calibration_error, fit_temperature
from cnnlab.run.folder import read_card

from .helpers import overconfident_logits


def test_temperature_equals_scipys_minimizer_on_the_same_logits():
    logits, labels = overconfident_logits()
    ours = fit_temperature(logits, labels)

    def nll(t: float) -> float:
        return -log_softmax(logits.double().numpy() / t, axis=1)[np.arange(400), labels].mean()

    theirs = minimize_scalar(nll, bounds=(0.05, 20), method="bounded",
                             options={"xatol": 1e-8}).x
    assert ours == pytest.approx(theirs, rel=1e-4)
    assert ours > 1  # overconfident logits are softened
    assert calibration_error(logits, labels, ours) < calibration_error(logits, labels)


def test_every_run_is_calibrated_and_gets_a_detector_that_keeps_its_share(digits_run):
    card = read_card(digits_run.path)
    assert card.calibration is not None and card.calibration.temperature > 0
    assert card.calibration.ece_after <= card.calibration.ece_before + 1e-6
    assert card.unknown is not None and card.unknown.score == "energy" and card.unknown.keep == 0.95
    from cnnlab.config import DataConfig
    from cnnlab.data import load_dataset

    val = load_dataset(DataConfig(name="digits")).val
    images = [image.numpy()[0] for image, _ in zip(val.images, val.labels, strict=True)]
    answers = cnnlab.load(digits_run.path).predict(images, topk=1)
    kept = np.mean([answer.known for answer in answers])
    assert kept == pytest.approx(0.95, abs=0.02)  # the threshold is the validation 5% quantile


def test_probabilities_are_the_softmax_of_the_logits_over_the_temperature(digits_run):
    predictor = cnnlab.load(digits_run.path)
    images = torch.rand(4, *predictor.input_shape)
    temperature = read_card(digits_run.path).temperature
    with torch.no_grad():
        logits = predictor.model(images)
    expected = (logits / temperature).softmax(1)
    assert torch.allclose(predictor.probabilities(images), expected, atol=1e-6)


def _noise(count: int, size: int = 8) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (size, size), dtype=np.uint8) for _ in range(count)]


def test_predict_says_unknown_with_the_closest_class_and_writes_the_verdict(digits_run, tmp_path):
    from PIL import Image

    for index, image in enumerate(_noise(6)):
        Image.fromarray(image).save(tmp_path / f"noise-{index}.png")
    done = subprocess.run([sys.executable, "-m", "cnnlab", "predict", str(digits_run.path),
                           str(tmp_path), "--out", str(tmp_path / "answers.json")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    answers = json.loads((tmp_path / "answers.json").read_text())
    assert all("known" in answer and "unknown_score" in answer for answer in answers)
    assert sum(not answer["known"] for answer in answers) >= 4  # noise is none of the digits
    refused = next(i for i, answer in enumerate(answers) if not answer["known"])
    for flags, said in (([], True), (["--no-unknown"], False)):
        table = subprocess.run([sys.executable, "-m", "cnnlab", "predict", str(digits_run.path),
                                answers[refused]["input"], *flags],
                               capture_output=True, text=True, timeout=600,
                               env={**os.environ, "COLUMNS": "200"})
        assert ("unknown (closest:" in table.stdout) is said


def test_an_old_run_without_a_detector_still_predicts_and_says_so_once(digits_run, tmp_path, caplog):
    old = tmp_path / "old"
    shutil.copytree(digits_run.path, old)
    card = json.loads((old / "model.json").read_text())
    card.pop("unknown"), card.pop("calibration")
    (old / "model.json").write_text(json.dumps(card))
    answers = cnnlab.load(old).predict(_noise(2), topk=1)
    assert [answer.known for answer in answers] == [None, None]
    assert sum("no unknown-image detector" in r.getMessage() for r in caplog.records) == 1


def test_the_export_carries_the_detector_and_agrees_with_pytorch(digits_run, tmp_path):
    out = tmp_path / "export"
    cnnlab.export(digits_run.path, out=str(out), limit=64, quiet=True)
    images = _noise(4) + [np.full((8, 8), 128, np.uint8)]
    eager = cnnlab.load(digits_run.path).predict(images, topk=1)
    onnx = cnnlab.load(out).predict(images, topk=1)
    assert [a.known for a in eager] == [b.known for b in onnx]
    assert [a.score for a in eager] == pytest.approx([b.score for b in onnx], abs=1e-4)
    assert [a[0].probability for a in eager] == pytest.approx([b[0].probability for b in onnx],
                                                               abs=1e-4)


def test_evaluate_unknown_auroc_equals_scikit_learn_on_scores_computed_apart(digits_run, tmp_path):
    from cnnlab.config import DataConfig
    from cnnlab.data import load_dataset
    from cnnlab.run.folder import load_model
    from cnnlab.run.inference import predict_logits

    evaluation = cnnlab.evaluate(digits_run.path, max_shift=0, unknown="fashion-mnist",
                                 out=str(tmp_path / "evaluate"), quiet=True).metrics
    assert evaluation.images == 359
    measured = json.loads((tmp_path / "evaluate" / "unknown.json").read_text())
    model, _ = load_model(digits_run.path)
    model.temperature, model.flip_tta = 1.0, False  # raw logits
    known = predict_logits(model, load_dataset(DataConfig(name="digits")).test, torch.device("cpu"))[0]
    fashion = load_dataset(DataConfig(name="fashion-mnist", image_size=8)).test
    unknown = predict_logits(model, fashion, torch.device("cpu"))[0]
    energy = np.r_[logsumexp(known.double().numpy(), axis=1),
                   logsumexp(unknown.double().numpy(), axis=1)]
    truth = np.r_[np.ones(len(known)), np.zeros(len(unknown))]
    ours = next(s for s in measured["scores"] if s["score"] == "energy")
    assert ours["auroc"] == pytest.approx(roc_auc_score(truth, energy), abs=1e-6)
    assert measured["detector"] == "energy" and 0 <= measured["known_kept"] <= 1
    assert (tmp_path / "evaluate" / "unknown_scores.png").is_file()


def test_a_run_without_a_validation_split_is_one_line(tmp_path, capfd):
    run = cnnlab.train(data={"name": "digits", "val_fraction": 0.0, "image_size": 16},
                       model="lenet5", epochs=1, log="none", out=str(tmp_path / "run"))
    assert "not calibrated" in capfd.readouterr().err
    assert read_card(run.path).unknown is None
    done = subprocess.run([sys.executable, "-m", "cnnlab", "calibrate", str(run.path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "no validation split" in done.stderr


def test_serve_answers_known_and_the_score_and_not_with_no_unknown(digits_run):
    import io

    from fastapi.testclient import TestClient
    from PIL import Image

    from cnnlab.serve.app import create_app

    files = []
    for index, image in enumerate(_noise(4) + [np.full((8, 8), 255, np.uint8)]):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        files.append(("file", (f"{index}.png", buffer.getvalue())))
    expected = cnnlab.load(digits_run.path).predict(_noise(4) + [np.full((8, 8), 255, np.uint8)])
    with TestClient(create_app(digits_run.path)) as client:
        answers = client.post("/predict", files=files).json()["predictions"]
    assert [a["known"] for a in answers] == [e.known for e in expected]
    assert [a["unknown_score"] for a in answers] == pytest.approx([e.score for e in expected],
                                                                  abs=1e-5)
    with TestClient(create_app(digits_run.path, unknown=False)) as client:
        answers = client.post("/predict", files=files).json()["predictions"]
    assert all("known" not in answer for answer in answers)


def test_calibrating_on_images_the_probe_was_fitted_on_says_so(digits_run, tmp_path):
    from cnnlab.calibrate.run import calibrate_run

    refitted = tmp_path / "refitted"
    shutil.copytree(digits_run.path, refitted)
    card = json.loads((refitted / "model.json").read_text())
    (refitted / "model.json").write_text(json.dumps({**card, "fitted_on": ["train", "val"]}))
    assert "fitted on these validation images" in calibrate_run(refitted, quiet=True).describe()
    assert "fitted on these" not in calibrate_run(digits_run.path, quiet=True).describe()


def test_every_unknown_score_is_a_choice_of_calibrate_with_its_help():
    import dataclasses

    from cnnlab.calibrate.settings import CalibrateSettings
    from cnnlab.run.unknown_scores import UNKNOWN_SCORES, register_unknown_score

    score = next(f for f in dataclasses.fields(CalibrateSettings) if f.name == "score")
    assert list(score.metadata["choices"]) == list(UNKNOWN_SCORES)
    assert score.default in UNKNOWN_SCORES
    for entry in UNKNOWN_SCORES.values():
        assert entry.help and f"{entry.name} ({entry.help})" in score.metadata["help"]
    with pytest.raises(ValueError, match="registered twice"):
        register_unknown_score(UNKNOWN_SCORES["energy"])


def test_a_new_unknown_score_is_one_table_entry(digits_run, tmp_path, capsys):
    import contextlib

    from cnnlab.base.errors import CnnlabError
    from cnnlab.cli import main
    from cnnlab.run.unknown_scores import UNKNOWN_SCORES, UnknownScore, register_unknown_score

    run = tmp_path / "run"
    shutil.copytree(digits_run.path, run)
    register_unknown_score(UnknownScore("minlogit", "minus the smallest logit",
                                        lambda inputs: -inputs.logits.min(1).values))
    try:
        with contextlib.suppress(SystemExit):
            main(["calibrate", "--help"])
        assert "minlogit" in capsys.readouterr().out
        assert main(["calibrate", str(run), "--score", "minlogit", "--device", "cpu"]) == 0
        assert read_card(run).unknown.score == "minlogit"
        predictor = cnnlab.load(run)
        answers = predictor.predict(_noise(3), topk=1)
        pixels = torch.from_numpy(np.stack(_noise(3))).float()[:, None] / 255
        with torch.no_grad():
            expected = -predictor.model(pixels).min(1).values
        assert [answer.score for answer in answers] == pytest.approx(expected.tolist(), abs=1e-4)
        assert all(isinstance(answer.known, bool) for answer in answers)
    finally:
        del UNKNOWN_SCORES["minlogit"]
    assert main(["calibrate", str(run), "--score", "minlogit"]) == 2  # a choice no more
    assert "unknown --score value 'minlogit'" in capsys.readouterr().err
    with pytest.raises(CnnlabError, match="unknown score 'minlogit'"):
        read_card(run)


@pytest.fixture(scope="module")
def mahalanobis_run(digits_run, tmp_path_factory):
    """The digits run with a detector on the features: its statistics in unknown.safetensors."""
    run = tmp_path_factory.mktemp("mahalanobis") / "run"
    shutil.copytree(digits_run.path, run, ignore=shutil.ignore_patterns("engine", "export*"))
    cnnlab.calibrate(run, score="mahalanobis", quiet=True)
    return run


def _statistics_copy(mahalanobis_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(mahalanobis_run, run)
    return run, run / "unknown.safetensors"


def _flip_precision_bytes(path) -> None:
    """Damage that still parses: bytes inside the precision matrix's data made 0xff (NaN)."""
    import struct

    data = bytearray(path.read_bytes())
    header_size = struct.unpack("<Q", data[:8])[0]
    start = 8 + header_size + json.loads(data[8:8 + header_size])["precision"]["data_offsets"][0]
    data[start:start + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))


def test_damaged_detector_statistics_are_one_line_not_every_image_unknown(mahalanobis_run,
                                                                          tmp_path):
    from .helpers import digit_png, error_line, free_port, run_cnnlab

    run, statistics = _statistics_copy(mahalanobis_run, tmp_path)
    assert (run / "unknown.safetensors.sha256").is_file()  # kept as the weights are
    image = digit_png(tmp_path / "zero.png")
    assert cnnlab.load(run).predict(image)[0].known is True
    _flip_precision_bytes(statistics)
    for command in (["predict", str(run), str(image), "--format", "json"],
                    ["serve", str(run), "--port", str(free_port())]):
        done = run_cnnlab(*command)
        assert done.returncode == 2 and done.stdout == ""
        line = error_line(done.stderr)
        assert str(statistics) in line and "SHA-256" in line and "calibrate" in line
    assert cnnlab.load(run, unknown=False).predict(image)[0].known is None  # the way around it


def test_detector_statistics_from_before_checksums_load_but_their_values_are_checked(
        mahalanobis_run, tmp_path):
    from safetensors.torch import load_file, save_file

    from cnnlab.base.errors import CnnlabError

    run, statistics = _statistics_copy(mahalanobis_run, tmp_path)
    (run / "unknown.safetensors.sha256").unlink()  # written before checksums were kept
    answers = cnnlab.load(run).predict(_noise(3), topk=1)
    assert all(isinstance(answer.known, bool) and np.isfinite(answer.score) for answer in answers)
    state = load_file(statistics)
    for name, change in (("precision", lambda p: p.index_fill(0, torch.tensor([3]), np.nan)),
                         ("precision", lambda p: p + torch.eye(len(p)).roll(1, 1) * p.abs().max()),
                         ("means", lambda m: m[:-1])):
        save_file({**state, name: change(state[name]).contiguous()}, statistics)
        with pytest.raises(CnnlabError, match=f"{statistics} is damaged: .*calibrate"):
            cnnlab.load(run)


def test_evaluate_unknown_skips_an_unreadable_image_and_names_it(digits_run, tmp_path, caplog):
    """What evaluate --unknown reads of a folder: one bad file is skipped and named in one line,
    as training and predict skip it; with none readable, one error."""
    from PIL import Image

    from cnnlab.base.errors import CnnlabError
    from cnnlab.evaluate.unknown import unknown_split

    folder = tmp_path / "others"
    folder.mkdir()
    for index, image in enumerate(_noise(3)):
        Image.fromarray(image).save(folder / f"noise-{index}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    card = read_card(digits_run.path)
    split = unknown_split(str(folder), card)
    assert len(split) == 3 and tuple(split.images.shape[1:]) == card.input.shape
    said = [r.getMessage() for r in caplog.records if "broken.png" in r.getMessage()]
    assert len(said) == 1 and "skipping unreadable image" in said[0]
    for name in ("noise-0.png", "noise-1.png", "noise-2.png"):
        (folder / name).write_bytes(b"")
    with pytest.raises(CnnlabError, match="none of its 4 image file.s. could be read"):
        unknown_split(str(folder), card)
