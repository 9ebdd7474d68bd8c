"""The fast engine: ONNX Runtime behind predict, evaluate and serve, on a graph exported once into
RUN/engine/, checked against eager PyTorch, remade when the weights change, and left for PyTorch
(said in one line) when it does not match."""

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab.base.errors import CnnlabError
from cnnlab.base.fileio import sha256_of
from cnnlab.run import engine as engine_module
from cnnlab.run.folder import load_model, read_card, save_model

CLI = [sys.executable, "-m", "cnnlab"]


def _digits(count: int = 24) -> list[np.ndarray]:
    from sklearn.datasets import load_digits

    return [(image * (255 / 16)).astype(np.uint8) for image in load_digits().images[-count:]]


def _record(run: Path) -> dict:
    return json.loads((run / "engine" / "engine.json").read_text())


def _probabilities(predictor, images) -> np.ndarray:
    """(N, K) probabilities in class order, with the detector's scores as a last column."""
    answers = predictor.predict(images, topk=len(predictor.class_names))
    rows = [[s.probability for s in sorted(a, key=lambda s: s.index)] + [a.score] for a in answers]
    return np.array(rows)


@pytest.fixture
def run(digits_run, tmp_path) -> Path:
    copy = tmp_path / "digits"
    shutil.copytree(digits_run.path, copy, ignore=shutil.ignore_patterns("engine", "export*"))
    return copy


def test_onnx_runtime_predicts_what_pytorch_predicts_and_the_graph_is_made_once(run):
    onnx = cnnlab.load(run, engine="onnx")
    torch_ = cnnlab.load(run, engine="torch")
    assert (onnx.runtime, torch_.runtime) == ("onnxruntime", "pytorch")
    ours, theirs = _probabilities(onnx, _digits()), _probabilities(torch_, _digits())
    assert np.abs(ours - theirs).max() <= 1e-4
    assert (ours[:, :-1].argmax(1) == theirs[:, :-1].argmax(1)).all()
    record = _record(run)
    assert record["passed"] and record["max_abs_difference"] <= 1e-4
    assert record["key"]["weights_sha256"] == read_card(run).weights_sha256
    made = (run / "engine" / "engine.json").stat().st_mtime_ns
    assert cnnlab.load(run, engine="onnx").runtime == "onnxruntime"
    assert (run / "engine" / "engine.json").stat().st_mtime_ns == made  # not made again


def test_auto_runs_onnx_runtime_only_where_the_network_is_costly(run, monkeypatch):
    shutil.rmtree(run / "engine", ignore_errors=True)
    assert cnnlab.load(run).runtime == "pytorch"  # 0.7 MFLOPs an image: not worth an export
    assert not (run / "engine").exists()
    monkeypatch.setattr(engine_module, "AUTO_MIN_FLOPS", 0.5e6)
    assert cnnlab.load(run).runtime == "onnxruntime"


@pytest.mark.parametrize(("architecture", "shape"), [("fast", (1, 28, 28)),
                                                     ("timm:efficientnet_lite0", (3, 64, 64))])
def test_the_flops_that_decide_are_pytorchs_flop_counter(architecture, shape):
    from torch.utils.flop_counter import FlopCounterMode

    from cnnlab.models import create_model

    model, _, _ = create_model(architecture, input_shape=shape, num_classes=10,
                               mean=[0.5] * shape[0], std=[0.5] * shape[0])
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, *shape))
    assert engine_module.flops_per_image(model, shape) == counter.get_total_flops()


def test_new_weights_remake_the_graph_and_a_damaged_one_is_never_used(run):
    before = _probabilities(cnnlab.load(run, engine="onnx"), _digits())
    model, card = load_model(run)
    with torch.no_grad():
        model.output_layer.bias += torch.arange(10.0)  # the run's new best weights
    save_model(run, model, card)
    after = _probabilities(cnnlab.load(run, engine="onnx"), _digits())
    expected = _probabilities(cnnlab.load(run, engine="torch"), _digits())
    assert np.abs(after - expected).max() <= 1e-4 and np.abs(after - before).max() > 0.01
    assert _record(run)["key"]["weights_sha256"] == read_card(run).weights_sha256
    graph = run / "engine" / "graph.onnx"
    graph.write_bytes(graph.read_bytes()[:-64] + bytes(64))  # damaged on disk
    repaired = _probabilities(cnnlab.load(run, engine="onnx"), _digits())
    assert np.abs(repaired - expected).max() <= 1e-4
    assert _record(run)["graph_sha256"] == sha256_of(graph)


def test_a_graph_that_differs_from_pytorch_is_left_for_pytorch_in_one_line(run, monkeypatch,
                                                                            caplog):
    monkeypatch.setattr(engine_module, "MAX_DIFFERENCE", -1.0)  # no graph can match
    monkeypatch.setattr(engine_module, "AUTO_MIN_FLOPS", 0)
    with caplog.at_level(logging.WARNING, logger="cnnlab"):
        predictor = cnnlab.load(run)
    assert predictor.runtime == "pytorch" and not _record(run)["passed"]
    said = [r.getMessage() for r in caplog.records if "PyTorch runs it instead" in r.getMessage()]
    assert len(said) == 1 and "differs from PyTorch by" in said[0]
    made = (run / "engine" / "engine.json").stat().st_mtime_ns
    with pytest.raises(CnnlabError, match="--engine onnx: .*differs from PyTorch"):
        cnnlab.load(run, engine="onnx")
    assert (run / "engine" / "engine.json").stat().st_mtime_ns == made  # not exported again


def test_a_passing_export_of_the_same_weights_is_used_as_it_is(run):
    cnnlab.export(run, limit=64, quiet=True)
    assert cnnlab.load(run, engine="onnx").engine.path == run / "export" / "model.onnx"
    assert not (run / "engine").exists()


def test_a_detector_on_features_keeps_pytorch(run, tmp_path):
    cnnlab.calibrate(run, score="mahalanobis", quiet=True)
    assert cnnlab.load(run, engine="onnx", unknown=False).runtime == "onnxruntime"
    assert cnnlab.load(run).runtime == "pytorch"
    with pytest.raises(CnnlabError, match="needs the network's features"):
        cnnlab.load(run, engine="onnx")


def test_evaluate_gives_the_same_numbers_on_either_engine(run, tmp_path):
    onnx = cnnlab.evaluate(run, engine="onnx", out=str(tmp_path / "onnx"), quiet=True).metrics
    eager = cnnlab.evaluate(run, engine="torch", out=str(tmp_path / "torch"), quiet=True).metrics
    assert onnx.accuracy == eager.accuracy and onnx.images == eager.images
    assert [row.accuracy for row in onnx.translation] == [row.accuracy for row in eager.translation]
    assert onnx.translation and onnx.loss == pytest.approx(eager.loss, abs=1e-5)


def test_the_command_line_takes_the_engine_and_refuses_another(run, tmp_path):
    from PIL import Image

    image = tmp_path / "seven.png"
    Image.fromarray(_digits(1)[0]).save(image)
    done = subprocess.run([*CLI, "predict", str(run), str(image), "--engine", "onnx", "--topk",
                           "3", "--format", "json"], capture_output=True, text=True, check=True)
    expected = cnnlab.load(run, engine="torch").predict(image, topk=3)[0]
    answer = json.loads(done.stdout)[0]["top"]
    assert [s["name"] for s in answer] == [s.name for s in expected]
    assert [s["probability"] for s in answer] == pytest.approx([s.probability for s in expected],
                                                               abs=1e-4)
    wrong = subprocess.run([*CLI, "predict", str(run), str(image), "--engine", "tensorrt"],
                           capture_output=True, text=True)
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1
    assert "engine" in wrong.stderr and "onnx" in wrong.stderr


def test_outputs_that_are_not_numbers_fail_parity(tmp_path):
    """A graph whose outputs are NaN agrees with nothing (max(0.0, nan) would call it 0.0)."""
    from cnnlab.models.onnx_graph import module_to_onnx

    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    graph = tmp_path / "graph.onnx"
    module_to_onnx(linear, (1, 4, 4), graph, say=lambda line: None)
    assert engine_module._parity(graph, linear, (1, 4, 4)) < 1e-5

    class NotANumber(torch.nn.Module):
        def forward(self, pixels):
            return linear(pixels) * float("nan")

    assert engine_module._parity(graph, NotANumber(), (1, 4, 4)) == float("inf")
    record = tmp_path / "engine.json"
    made = engine_module._make(record, tmp_path / "nan.onnx", {}, NotANumber(), (1, 4, 4))
    assert not made.passed and "not numbers" in made.reason
    assert json.loads(record.read_text(), parse_constant=lambda name: pytest.fail(name))[
        "max_abs_difference"] is None  # strict JSON: no Infinity written


def _tamper(graph: Path, record: Path | None = None) -> str:
    """Change the graph's output bias and rewrite the SHA-256 its record keeps to match, as a
    hand that edits both would; returns the new SHA-256."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(graph))
    bias = next(t for t in reversed(model.graph.initializer) if list(t.dims) == [10])
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + 5 * np.eye(10)[0]
                                          .astype(np.float32), bias.name))
    onnx.save(model, str(graph))
    if record is not None:
        data = json.loads(record.read_text())
        data["graph_sha256"] = sha256_of(graph)
        record.write_text(json.dumps(data))
    return sha256_of(graph)


def test_a_tampered_graph_whose_record_was_rewritten_is_caught_and_remade(run, tmp_path):
    from PIL import Image

    from .helpers import run_cnnlab

    assert cnnlab.load(run, engine="onnx").runtime == "onnxruntime"  # the graph is made
    tampered = _tamper(run / "engine" / "graph.onnx", run / "engine" / "engine.json")
    image = tmp_path / "seven.png"
    Image.fromarray(_digits(1)[0]).save(image)
    done = run_cnnlab("predict", str(run), str(image), "--engine", "onnx", "--topk", "10",
                      "--format", "json")  # a fresh process, which has checked no graph yet
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if line.startswith("warning")]
    assert len(said) == 1 and "graph.onnx does not agree with the weights" in said[0]
    expected = cnnlab.load(run, engine="torch").predict(image, topk=10)[0]
    answer = {s["name"]: s["probability"] for s in json.loads(done.stdout)[0]["top"]}
    assert [answer[s.name] for s in expected] == pytest.approx([s.probability for s in expected],
                                                               abs=1e-4)
    assert _record(run)["graph_sha256"] == sha256_of(run / "engine" / "graph.onnx") != tampered


def test_a_tampered_export_whose_manifest_was_rewritten_is_not_used(run, caplog):
    cnnlab.export(run, limit=64, quiet=True)
    export = run / "export" / "model.onnx"
    manifest = json.loads((run / "export" / "export.json").read_text())
    manifest["sha256"]["model.onnx"] = _tamper(export)
    (run / "export" / "export.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="cnnlab"):
        predictor = cnnlab.load(run, engine="onnx")
    said = [r.getMessage() for r in caplog.records if "does not agree" in r.getMessage()]
    assert len(said) == 1 and "model.onnx" in said[0]
    assert predictor.engine.path == run / "engine" / "graph.onnx"  # its own graph, made now
    expected = _probabilities(cnnlab.load(run, engine="torch"), _digits())
    assert np.abs(_probabilities(predictor, _digits()) - expected).max() <= 1e-4


_PARITY_CHECKS = """
import sys
import cnnlab
from cnnlab.run import engine
checks = []
measure = engine._parity
engine._parity = lambda *args, **kwargs: checks.append(1) or measure(*args, **kwargs)
assert cnnlab.load(sys.argv[1], engine="onnx").runtime == "onnxruntime"
print(len(checks))
"""


def test_a_graph_that_agreed_is_not_checked_again_until_its_file_changes(run):
    def checks_in_a_fresh_process() -> int:
        done = subprocess.run([sys.executable, "-c", _PARITY_CHECKS, str(run)],
                              capture_output=True, text=True, check=True)
        return int(done.stdout.split()[-1])

    assert cnnlab.load(run, engine="onnx").runtime == "onnxruntime"  # made and checked here
    assert checks_in_a_fresh_process() == 0  # it agreed, and its file is the one that agreed
    graph = run / "engine" / "graph.onnx"
    graph.write_bytes(graph.read_bytes())  # the same bytes, written again: checked again
    assert checks_in_a_fresh_process() == 1
    assert checks_in_a_fresh_process() == 0
