"""model.json as a type: one writer, one reader, and a clear line for every bad field."""

import json
import shutil
import subprocess
import sys

import pytest

from cnnlab.base.errors import CnnlabError
from cnnlab.run.contract import FORMAT, InputSpec, ModelCard, Preprocessing
from cnnlab.run.folder import META, read_card

CARD = ModelCard(name="fast", architecture="conv(4) relu flatten dense", class_names=("a", "b", "c"),
                 input=InputSpec(1, 8, 8), preprocessing=Preprocessing(mean=(0.5,), std=(0.25,)),
                 dataset="digits", epoch=3, val_accuracy=0.9)


def test_round_trip():
    values = json.loads(CARD.to_json())
    assert values["format"] == FORMAT and values["architecture"] == {"spec": CARD.architecture}
    assert ModelCard.from_dict(values) == CARD


def _without(path: str) -> dict:
    values = json.loads(CARD.to_json())
    *parents, last = path.split(".")
    target = values
    for key in parents:
        target = target[key]
    del target[last]
    return values


@pytest.mark.parametrize("field", ["name", "class_names", "input", "input.height",
                                   "preprocessing.mean", "architecture.spec"])
def test_a_missing_field_is_named(field):
    with pytest.raises(CnnlabError, match=rf"the field '{field.split('.')[-1]}' is missing"):
        ModelCard.from_dict(_without(field))


@pytest.mark.parametrize(("path", "value", "message"), [
    ("class_names", "abc", "'class_names' must be a list of str"),
    ("class_names", ["only"], "two or more classes"),
    ("epoch", "3", "'epoch' must be int"),
    ("flip_tta", 1, "'flip_tta' must be bool"),
    ("format", "cnnlab-model/9", "unsupported model format 'cnnlab-model/9'"),
])
def test_a_malformed_field_is_named(path, value, message):
    values = json.loads(CARD.to_json())
    values[path] = value
    with pytest.raises(CnnlabError, match=message):
        ModelCard.from_dict(values)


def test_normalization_needs_one_value_per_channel():
    values = json.loads(CARD.to_json())
    values["preprocessing"]["mean"] = [0.5, 0.5, 0.5]
    with pytest.raises(CnnlabError, match="one value per input channel"):
        ModelCard.from_dict(values)


def test_a_trained_run_reads_back(digits_run):
    card = read_card(digits_run.path)
    assert card.architecture and card.input.shape == (1, 8, 8) and card.num_classes == 10
    assert card.epoch == digits_run.best_epoch and "torch" in card.versions


def test_a_broken_model_json_is_one_line_with_exit_code_2(digits_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(digits_run.path, run)
    values = json.loads((run / META).read_text())
    del values["class_names"]
    (run / META).write_text(json.dumps(values))
    image = tmp_path / "x.png"
    image.write_bytes(b"")  # never read: the model fails to load first
    result = subprocess.run([sys.executable, "-m", "cnnlab", "predict", str(run), str(image)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {run / META}: the field 'class_names' is missing"]


# model.json as cnnlab wrote it before the typed reader (every field the card has), and the card
# it stands for: it still reads, and is written back to the same text.
OLD_CARD = """{
  "format": "cnnlab-model/1",
  "name": "simple",
  "architecture": {"spec": "conv(4) relu flatten dense"},
  "class_names": ["a", "b"],
  "input": {"channels": 3, "height": 8, "width": 8},
  "preprocessing": {"interpolation": "bicubic", "crop_pct": 0.875, "mean": [0.5, 0.4, 0.3],
                    "std": [0.2, 0.2, 0.25], "scale": "pixels / 255",
                    "resize": "cover then center crop"},
  "pretrained": true, "dataset": "digits", "flip_augmented": true, "flip_tta": false, "epoch": 3,
  "val_accuracy": 0.9, "test_accuracy": 0.875, "head": "probe", "fitted_on": ["train", "val"],
  "excluded": {"train": 2},
  "calibration": {"temperature": 1.5, "ece_before": 0.1, "ece_after": 0.05, "images": 100},
  "unknown": {"score": "mahalanobis", "threshold": -12.5, "keep": 0.95,
              "file": "unknown.safetensors"},
  "versions": {"cnnlab": "0.1.0", "torch": "2.5.1"},
  "weights_sha256": "abababababababababababababababababababababababababababababababab"
}"""


def test_a_model_json_written_before_reads_the_same_and_writes_back_the_same():
    from cnnlab.run.contract import Calibration, UnknownDetector

    expected = ModelCard(
        name="simple", architecture="conv(4) relu flatten dense", class_names=("a", "b"),
        input=InputSpec(3, 8, 8),
        preprocessing=Preprocessing(interpolation="bicubic", crop_pct=0.875, mean=(0.5, 0.4, 0.3),
                                    std=(0.2, 0.2, 0.25)),
        pretrained=True, dataset="digits", flip_augmented=True, epoch=3, val_accuracy=0.9,
        test_accuracy=0.875, head="probe", fitted_on=("train", "val"), excluded={"train": 2},
        calibration=Calibration(1.5, 0.1, 0.05, 100),
        unknown=UnknownDetector("mahalanobis", -12.5, 0.95, "unknown.safetensors"),
        versions={"cnnlab": "0.1.0", "torch": "2.5.1"}, weights_sha256="ab" * 32)
    values = json.loads(OLD_CARD)
    card = ModelCard.from_dict(values)
    assert card == expected
    assert json.loads(card.to_json()) == values
    assert card.to_json() == json.dumps(values, indent=2)  # the same text, key by key


def test_an_early_model_json_with_few_fields_reads_with_the_defaults():
    card = ModelCard.from_dict({"format": "cnnlab-model/1", "name": "n",
                                "architecture": {"spec": "n"}, "class_names": ["a", "b"],
                                "input": {"channels": 1, "height": 8, "width": 8},
                                "preprocessing": {"mean": [0], "std": [1]},
                                "calibration": None, "unknown": None, "fitted_on": None})
    assert card.preprocessing.interpolation == "bilinear" and card.preprocessing.crop_pct == 1.0
    assert card.fitted_on == ("train",) and card.calibration is None and card.unknown is None
    assert card.temperature == 1.0 and card.versions == {} and card.excluded == {}


def _card_with(path: str, value) -> dict:
    values = json.loads(CARD.to_json())
    *parents, last = path.split(".")
    target = values
    for key in parents:
        target = target[key]
    target[last] = value
    return values


@pytest.mark.parametrize(("path", "value", "line"), [
    ("epoch", True, "model.json: the field 'epoch' must be int, got True"),
    ("val_accuracy", float("nan"),
     "model.json: the field 'val_accuracy' must be float, got nan (numbers must be finite)"),
    ("val_accuracy", "0.9", "model.json: the field 'val_accuracy' must be float, got '0.9'"),
    ("input.channels", 2, "model.json input: expected 1 or 3 channels and a positive size, got "
                          "(2, 8, 8)"),
    ("input.width", 8.5, "model.json input: the field 'width' must be int, got 8.5"),
    ("preprocessing.mean", [0.5, None], "model.json preprocessing: the field 'mean' must be a "
                                        "list of float, got [0.5, None]"),
    ("preprocessing.std", [-1.0], "model.json preprocessing: mean must be finite and std positive"),
    ("architecture", "conv(4)", "model.json: the field 'architecture' must be a JSON object, "
                                "got 'conv(4)'"),
    ("calibration", {"temperature": 0, "ece_before": 0.1, "ece_after": 0.1, "images": 9},
     "model.json calibration: the temperature must be positive"),
    ("unknown", {"score": "energie", "threshold": 1.0, "keep": 0.95},
     "model.json unknown: unknown score 'energie' (this cnnlab knows msp, energy, maxlogit, "
     "mahalanobis)"),
    ("unknown", {"score": "energy", "threshold": 1.0, "keep": 0.95, "file": "../x"},
     "model.json unknown: 'file' must name a file in the run folder"),
    ("excluded", {"train": -1}, "model.json: excluded must map splits to image counts"),
    ("weights_sha256", "abc", "model.json: weights_sha256 must be 64 hexadecimal digits"),
    ("versions", {"torch": 2}, "model.json: the field 'versions' must be a JSON object of str, "
                               "got {'torch': 2}"),
])
def test_a_bad_model_json_field_is_the_line_that_names_it(path, value, line):
    with pytest.raises(CnnlabError) as raised:
        ModelCard.from_dict(_card_with(path, value))
    assert str(raised.value) == line


def test_the_interpolation_names_are_written_once():
    from PIL import Image

    from cnnlab.config.common import INTERPOLATIONS
    from cnnlab.data.images import RESAMPLING

    assert tuple(RESAMPLING) == INTERPOLATIONS
    assert RESAMPLING["lanczos"] is Image.Resampling.LANCZOS
    for name in INTERPOLATIONS:  # every name the config takes, the card takes
        assert ModelCard.from_dict(_card_with("preprocessing.interpolation", name)) \
            .preprocessing.interpolation == name


def test_results_files_written_before_still_read():
    from cnnlab.base.typed import read_typed
    from cnnlab.run.results import AttackMetrics, ExportParity, TrainingResults

    attack = read_typed(AttackMetrics, {
        "run": "r", "data": "digits", "split": "test", "images": 10, "method": "fgsm",
        "norm": "linf", "clean_accuracy": 0.9, "results": [{"eps": 0.1, "robust_accuracy": 0.5}]},
        "metrics.json")  # before the seed and the adversarial accuracy were kept
    assert attack.seed == 0 and attack.results[0].adversarial_accuracy == 0.5
    parity = read_typed(ExportParity, {"fp32": {
        "images": 4, "max_abs_logit_difference": 1e-6, "top1_agreement": 1,
        "eager_accuracy": 0.5, "onnx_accuracy": 0.5}}, "export.json parity")
    assert parity.fp32.passed and parity.fp32.disagreements_beyond_near_ties == 0
    assert parity.int8 is None and parity.fp32.top1_agreement == 1.0
    results = {"status": "finished", "epochs": 2, "best_epoch": 2, "best_val_accuracy": None,
               "test_accuracy": 0.5, "seconds": 3}
    assert read_typed(TrainingResults, results, "results.json").to_dict() == {**results,
                                                                              "seconds": 3.0}
    with pytest.raises(CnnlabError, match="results.json: the field 'epochs' must be int, got '2'"):
        read_typed(TrainingResults, {**results, "epochs": "2"}, "results.json")
