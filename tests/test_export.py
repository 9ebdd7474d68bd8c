"""Export: the ONNX graph predicts what eager PyTorch predicts, int8 stays within a point, and an
export folder is a model like any run folder (predict, evaluate, cnnlab.load)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.base.errors import CnnlabError
from cnnlab.models.onnx import OnnxClassifier, check_external_data, open_session
from cnnlab.run.contract import ExportManifest

from .helpers import make_shape_folder


@pytest.fixture(scope="module")
def exported(digits_run, tmp_path_factory):
    """The digits run exported fp32 and int8, into a folder of its own (the run stays as it is)."""
    out = tmp_path_factory.mktemp("export") / "digits"
    result = cnnlab.export(digits_run.path, int8=True, out=str(out), quiet=True)
    return result


def test_fp32_and_int8_meet_their_parity_targets(exported):
    fp32, int8 = exported.manifest.parity.fp32.to_dict(), exported.manifest.parity.int8.to_dict()
    assert fp32["images"] == 359  # the whole digits test split
    assert fp32["max_abs_logit_difference"] <= 1e-4 and fp32["top1_agreement"] == 1.0
    assert abs(int8["accuracy_difference"]) <= 0.01 and int8["passed"]
    assert exported.passed
    for name in ("model.onnx", "model.int8.onnx"):
        onnx.checker.check_model(str(exported.folder / name), full_check=True)
    int8_size = (exported.folder / "model.int8.onnx").stat().st_size
    assert int8_size < (exported.folder / "model.onnx").stat().st_size


def test_the_graph_takes_pixels_with_any_batch_size(exported, digits_run):
    model = OnnxClassifier(exported.folder / "model.onnx")
    eager = cnnlab.load(digits_run.path).model
    for batch in (1, 3, 300):
        pixels = torch.rand(batch, 1, 8, 8)
        assert torch.allclose(model(pixels), eager(pixels), atol=1e-4)


def test_export_json_carries_the_contract(exported, digits_run):
    manifest = ExportManifest.read(exported.folder / "export.json")
    card = cnnlab.load(digits_run.path).card
    assert manifest.card.class_names == card.class_names
    assert manifest.card.preprocessing == card.preprocessing
    values = json.loads((exported.folder / "export.json").read_text())
    assert values["input"] == {"name": "pixels", "shape": ["batch", 1, 8, 8], "dtype": "float32",
                               "range": [0.0, 1.0]}
    assert values["files"] == {"fp32": "model.onnx", "int8": "model.int8.onnx"}
    assert values["opset"] >= 17 and "onnxruntime" in values["versions"]


def _image_files(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    paths = []
    for index in range(6):
        array = (digits.images[index] * (255 / 16)).astype(np.uint8)
        path = tmp_path / f"digit{index}.png"
        Image.fromarray(array).save(path)
        paths.append(path)
    big = tmp_path / "big-rgba.png"
    Image.fromarray(array).resize((3000, 2000)).convert("RGBA").save(big)
    gray = tmp_path / "gray.jpg"
    Image.fromarray(array).resize((64, 64)).save(gray)
    return [*paths, big, gray]


@pytest.mark.parametrize("target", ["folder", "onnx file"])
def test_predict_on_the_export_matches_the_run(exported, digits_run, tmp_path, target):
    files = _image_files(tmp_path)
    source = exported.folder if target == "folder" else exported.folder / "model.onnx"
    onnx_predictor, eager = cnnlab.load(source), cnnlab.load(digits_run.path)
    assert isinstance(onnx_predictor.model, OnnxClassifier)
    for ours, theirs in zip(onnx_predictor.predict(files, topk=3), eager.predict(files, topk=3),
                            strict=True):
        assert [s.index for s in ours] == [s.index for s in theirs]
        assert [s.probability for s in ours] == pytest.approx([s.probability for s in theirs],
                                                              abs=1e-5)


def test_cli_predict_and_evaluate_take_an_export(exported, digits_run, tmp_path):
    files = [str(p) for p in _image_files(tmp_path)[:3]]
    runs = {}
    for source in (digits_run.path, exported.folder / "model.int8.onnx"):
        result = subprocess.run([sys.executable, "-m", "cnnlab", "predict", str(source), *files,
                                 "--format", "json"], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        runs[source] = [row["top"][0]["name"] for row in json.loads(result.stdout)]
    assert len(set(map(tuple, runs.values()))) == 1  # int8 predicts the same classes here
    metrics = cnnlab.evaluate(exported.folder, max_shift=0, quiet=True)
    assert metrics.accuracy == pytest.approx(exported.manifest.parity.fp32.onnx_accuracy)


def test_an_export_moved_elsewhere_still_evaluates(exported, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(exported.folder, moved)
    assert cnnlab.evaluate(moved, max_shift=0, quiet=True).images == 359


def test_external_data_outside_the_folder_is_refused(tmp_path):
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [2],
                                np.array([1.0, 2.0], np.float32).tobytes(), raw=True)
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [weight])
    model = helper.make_model(graph)
    folder = tmp_path / "export"
    folder.mkdir()
    onnx.save_model(model, str(folder / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    check_external_data(folder / "model.onnx")  # inside the folder: fine
    assert (folder / "weights.bin").is_file()
    loaded = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    for entry in loaded.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../secret.bin"
    onnx.save_model(loaded, str(folder / "model.onnx"))
    with pytest.raises(CnnlabError, match="outside the model's folder"):
        check_external_data(folder / "model.onnx")
    with pytest.raises(CnnlabError, match="escapes model directory"):  # ONNX Runtime's own check
        open_session(folder / "model.onnx", own=True)


def test_a_network_without_conv_and_one_with_flip_tta_export(tmp_path):
    dense = cnnlab.train(data="digits", model="flatten dense(32) relu dense", epochs=1,
                         out=str(tmp_path / "dense"), quiet=True)
    assert cnnlab.export(dense.path, quiet=True).passed
    make_shape_folder(tmp_path / "shapes", per_class=20)
    tta = cnnlab.train(data=str(tmp_path / "shapes"), epochs=1, tta=True, quiet=True,
                       out=str(tmp_path / "tta"))
    result = cnnlab.export(tta.path, quiet=True)
    assert result.passed and result.manifest.output == "log_probabilities"
    pixels = torch.rand(2, *result.manifest.card.input.shape)
    model = OnnxClassifier(result.folder / "model.onnx")
    assert torch.allclose(model(pixels), model(pixels.flip(-1)), atol=1e-5)  # mirror-invariant


def test_cli_export_prints_parity_and_exports_are_not_exported_again(digits_run, tmp_path):
    out = tmp_path / "cli"
    result = subprocess.run([sys.executable, "-m", "cnnlab", "export", str(digits_run.path),
                             "--out", str(out), "--limit", "100"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "top-1 agreement" in result.stdout and "100.00%" in result.stdout
    again = subprocess.run([sys.executable, "-m", "cnnlab", "export", str(out)],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "already an export" in again.stderr


def _readme_snippet() -> str:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = text.split("## Export", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_snippet_predicts_what_cnnlab_predicts(exported, digits_run, tmp_path, capsys):
    """The ten lines for users without cnnlab: onnxruntime, NumPy and Pillow only."""
    snippet = _readme_snippet()
    assert "import cnnlab" not in snippet and "torch" not in snippet
    for path in _image_files(tmp_path)[-3:]:  # a digit, a 3000x2000 RGBA PNG, a gray JPEG
        given = {"export = ": f"export = {str(exported.folder)!r}",
                 "image = Image.open(": f"image = Image.open({str(path)!r})"}
        lines = [next((text for start, text in given.items() if line.startswith(start)), line)
                 for line in snippet.splitlines()]
        exec("\n".join(lines), {})
        name, probability, known = capsys.readouterr().out.split()
        answer = cnnlab.load(digits_run.path).predict(path)[0]
        assert name == answer[0].name
        assert float(probability) == pytest.approx(answer[0].probability, abs=1e-4)
        assert known == str(answer.known)
