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
