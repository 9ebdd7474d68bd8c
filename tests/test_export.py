"""Export: the ONNX graph predicts what eager PyTorch predicts, int8 stays within a point, and an
export folder is a model like any run folder (predict, evaluate, cnnlab.load). export.json records
the checksum of every file, a graph from another model is refused in one line, and a re-export
replaces its folder in one step."""

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.base.errors import CnnlabError
from cnnlab.cli import main
from cnnlab.models.onnx import OnnxClassifier, check_external_data, open_session
from cnnlab.models.onnx_graph import to_onnx
from cnnlab.run.contract import ExportManifest, InputSpec
from cnnlab.run.folder import build_model, read_card

from .helpers import error_line as _one_error_line
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
    metrics = cnnlab.evaluate(exported.folder, max_shift=0, quiet=True).metrics
    assert metrics.accuracy == pytest.approx(exported.manifest.parity.fp32.onnx_accuracy)


def test_an_export_moved_elsewhere_still_evaluates(exported, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(exported.folder, moved)
    assert cnnlab.evaluate(moved, max_shift=0, quiet=True).metrics.images == 359


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


def _digit_images(folder: Path) -> list[Path]:
    from sklearn.datasets import load_digits

    folder.mkdir(parents=True, exist_ok=True)
    images = load_digits().images[:4]
    paths = [folder / f"digit{i}.png" for i in range(len(images))]
    for image, path in zip(images, paths, strict=True):
        Image.fromarray((image * (255 / 16)).astype(np.uint8)).save(path)
    return paths


def _predicted(source: Path, images: list[Path]) -> list:
    return [[(score.name, score.probability) for score in top]
            for top in cnnlab.load(source, unknown=False).predict(images, topk=3)]


def _file_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


@pytest.fixture(scope="module")
def exported_run(digits_run, tmp_path_factory):
    """A copy of the digits run with its fp32 and int8 export in RUN/export/."""
    run = tmp_path_factory.mktemp("exported") / "run"
    shutil.copytree(digits_run.path, run)
    cnnlab.export(run, int8=True, calibration=64, limit=100, quiet=True)
    return run


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return _digit_images(tmp_path_factory.mktemp("images"))


@pytest.fixture
def export_copy(exported_run, tmp_path):
    target = tmp_path / "export"
    shutil.copytree(exported_run / "export", target)
    return target


@pytest.fixture(scope="module")
def three_class_graph(tmp_path_factory) -> Path:
    """model.onnx of a 3-class run on 8x8 grayscale images: the digits export's input, other
    classes."""
    root = tmp_path_factory.mktemp("shapes")
    make_shape_folder(root / "data", per_class=20)
    run = cnnlab.train(data=str(root / "data"), model="simple", epochs=1, image_size=8, channels=1,
                       out=str(root / "run"), quiet=True)
    return cnnlab.export(run.path, limit=20, quiet=True).folder / "model.onnx"


@pytest.fixture(scope="module")
def larger_input_graph(exported_run, tmp_path_factory) -> Path:
    """model.onnx of the digits architecture built for 12x12 images: the digits export's
    classes, another input."""
    card = read_card(exported_run).replace(input=InputSpec(1, 12, 12))
    path = tmp_path_factory.mktemp("larger") / "model.onnx"
    to_onnx(build_model(card), card.input.shape, path, say=lambda text: None)
    return path


def _drop_checksums(export: Path) -> None:
    """export.json as cnnlab wrote it before it recorded checksums."""
    values = json.loads((export / "export.json").read_text())
    del values["sha256"]
    (export / "export.json").write_text(json.dumps(values, indent=2))


def test_export_json_records_the_sha256_of_every_file(exported_run):
    values = json.loads((exported_run / "export" / "export.json").read_text())
    assert set(values["sha256"]) == {"model.onnx", "model.int8.onnx"}
    for name, digest in values["sha256"].items():
        assert hashlib.sha256((exported_run / "export" / name).read_bytes()).hexdigest() == digest


@pytest.mark.parametrize(("graph", "message"), [
    ("three_class_graph", "it outputs 3 classes, export.json names 10"),
    ("larger_input_graph", "it takes (batch, 1, 12, 12) pixels, export.json says (batch, 1, 8, 8)"),
])
def test_a_graph_from_another_model_is_refused_in_one_line(export_copy, images, capsys, request,
                                                           graph, message):
    shutil.copy(request.getfixturevalue(graph), export_copy / "model.onnx")
    assert main(["predict", str(export_copy), str(images[0])]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "model.onnx is damaged or not the file" in line and "SHA-256" in line
    _drop_checksums(export_copy)  # an export from before checksums: the graph is checked instead
    assert main(["predict", str(export_copy), str(images[0])]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "model.onnx does not match" in line and message in line


def test_the_server_refuses_a_mismatched_export_before_it_serves(export_copy, three_class_graph):
    from cnnlab.serve.app import create_app

    shutil.copy(three_class_graph, export_copy / "model.onnx")
    _drop_checksums(export_copy)
    with pytest.raises(CnnlabError, match="it outputs 3 classes, export.json names 10"):
        create_app(export_copy)


@pytest.mark.parametrize("name", ["model.onnx", "model.int8.onnx"])
def test_one_changed_byte_in_any_onnx_file_is_a_checksum_error(export_copy, images, capsys, name):
    data = bytearray((export_copy / name).read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the weights: the graph still parses
    (export_copy / name).write_bytes(bytes(data))
    assert main(["predict", str(export_copy), str(images[0])]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"{name} is damaged or not the file" in line


def test_an_export_without_checksums_still_loads_and_predicts_the_same(export_copy, images):
    before = _predicted(export_copy, images)
    _drop_checksums(export_copy)
    assert _predicted(export_copy, images) == before


def test_an_onnx_file_export_json_does_not_list_is_refused(export_copy, images, capsys):
    shutil.copy(export_copy / "model.onnx", export_copy / "other.onnx")
    assert main(["predict", str(export_copy / "other.onnx"), str(images[0])]) == 2
    assert "other.onnx is not one of the files" in _one_error_line(capsys.readouterr().err)


def _staging_folders(run: Path) -> list[Path]:
    return [path for path in run.glob(".export.*.tmp") if path.is_dir()]


def _kill_when(process: subprocess.Popen, ready, kill_signal: int) -> None:
    deadline = time.monotonic() + 300
    while not ready():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the export never reached the point to kill it at"
        time.sleep(0.02)
    process.send_signal(kill_signal)
    process.wait(timeout=60)


@pytest.mark.parametrize(("kill_signal", "when"), [
    (signal.SIGKILL, "the temporary folder appears"),
    (signal.SIGTERM, "the new model.onnx is written"),
])
def test_a_killed_re_export_leaves_the_old_export_whole(exported_run, images, tmp_path,
                                                        kill_signal, when):
    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    export = run / "export"
    files, predictions = _file_bytes(export), _predicted(export, images)
    process = subprocess.Popen([sys.executable, "-m", "cnnlab", "export", str(run), "--int8",
                                "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if when == "the temporary folder appears":
        _kill_when(process, lambda: _staging_folders(run), kill_signal)
    else:
        _kill_when(process, lambda: any((f / "model.onnx").is_file()
                                        for f in _staging_folders(run)), kill_signal)
    assert process.returncode == -kill_signal
    assert _staging_folders(run)  # what the kill left beside the export
    assert _file_bytes(export) == files
    assert _predicted(export, images) == predictions
    cnnlab.export(run, limit=50, quiet=True)  # the next export removes the leftovers
    assert not list(run.glob(".export.*"))
    assert sorted(p.name for p in export.iterdir()) == ["export.json", "model.onnx"]
    assert len(_predicted(export, images)) == len(images)


def test_a_re_export_keeps_other_results_in_the_folder(exported_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    results = run / "export" / "evaluate" / "metrics.json"
    results.parent.mkdir()
    results.write_text("{}")
    cnnlab.export(run, limit=50, quiet=True)
    assert results.read_text() == "{}"
    assert not (run / "export" / "model.int8.onnx").exists()  # this export made no int8 model


def _folder_with(folder: Path, text: str) -> Path:
    folder.mkdir()
    (folder / "model.onnx").write_text(text)
    return folder


def test_without_renameat2_two_renames_replace_the_folder(tmp_path, monkeypatch):
    from cnnlab.base import fileio

    monkeypatch.setattr(fileio, "_exchange", lambda first, second: False)  # as on macOS
    export = _folder_with(tmp_path / "export", "old")
    with fileio.replacing(export, ("model.onnx",)) as work:
        (work / "model.onnx").write_text("new")
    assert (export / "model.onnx").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_an_old_folder_left_under_its_hidden_name_is_put_back(tmp_path):
    from cnnlab.base.fileio import remove_leftovers

    _folder_with(tmp_path / ".export.old-1-ab.tmp", "old")  # killed between the two renames
    _folder_with(tmp_path / ".export.new-1-cd.tmp", "new, perhaps half-written")
    remove_leftovers(tmp_path / "export")
    assert (tmp_path / "export" / "model.onnx").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_an_out_folder_with_other_files_is_not_replaced(digits_run, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["export", str(digits_run.path), "--out", str(mine), "--quiet"]) == 2
    assert "holds files and no export.json" in _one_error_line(capsys.readouterr().err)
    assert (mine / "notes.txt").read_text() == "keep me"
