"""cnnlab compress and what it is made of: pruned networks rebuilt from their weights, knowledge
distillation (train --teacher), the candidates' measurement and the choice."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score

import cnnlab
from cnnlab.base.errors import CnnlabError
from cnnlab.compress.candidates import candidate_sides, candidates, takes_any_side
from cnnlab.compress.figures import pareto_front
from cnnlab.compress.record import CandidateRow, CompressRecord
from cnnlab.compress.run import choose
from cnnlab.data.images import to_float
from cnnlab.models import create_model
from cnnlab.models.prune import parameter_count, prune_channels, reshape_to
from cnnlab.run.data import run_dataset
from cnnlab.run.folder import load_model, read_card, save_model
from cnnlab.train.distill import Distillation, mixed_loss

from .helpers import error_line, make_folder, run_cnnlab

QUICK = {"epochs": 1, "prune": "0.5", "timing": 0.05, "quiet": True}


@pytest.fixture(scope="module")
def compressed(digits_run, tmp_path_factory):
    """The digits run compressed once: one candidate (half its channels), one epoch."""
    teacher = tmp_path_factory.mktemp("compress") / "teacher"
    shutil.copytree(digits_run.path, teacher)
    return cnnlab.compress(teacher, **QUICK)


@pytest.mark.parametrize("architecture, shape", [
    ("timm:efficientnet_lite0", (3, 48, 48)), ("fast", (1, 28, 28)), ("fast-deep", (1, 28, 28))])
def test_a_pruned_network_rebuilt_from_its_shapes_computes_the_same(architecture, shape):
    """Depthwise convs, squeeze-excite and residual adds (EfficientNet) stay consistent."""
    def build():
        return create_model(architecture, input_shape=shape, num_classes=5, mean=[0.5] * shape[0],
                            std=[0.25] * shape[0])[0].eval()
    pruned = build()
    before = parameter_count(pruned)
    prune_channels(pruned, 0.5, shape, keep=[pruned.output_layer])
    assert parameter_count(pruned) < 0.4 * before
    assert pruned.output_layer.out_features == 5
    rebuilt = reshape_to(build(), {k: v.shape for k, v in pruned.state_dict().items()})
    rebuilt.load_state_dict(pruned.state_dict())
    images = torch.rand(3, *shape)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(images), pruned(images))


def test_a_pruned_run_folder_loads_with_its_shapes(digits_run, tmp_path):
    model, card = load_model(digits_run.path)
    prune_channels(model, 0.5, card.input.shape, keep=[model.output_layer])
    save_model(tmp_path, model, card.replace(pruned=0.5))
    loaded, loaded_card = load_model(tmp_path)
    assert loaded_card.pruned == 0.5
    images = torch.rand(4, *card.input.shape)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images))


def test_the_distillation_loss_is_hintons():
    """T^2 KL(teacher || student) at temperature T, mixed with the hard loss by the weight."""
    torch.manual_seed(0)
    teacher = torch.nn.Linear(12, 4)
    student_logits, inputs = torch.randn(6, 4), torch.randn(6, 12)
    distillation = Distillation(teacher, (1, 1), (1, 1), temperature=3.0, weight=0.7)
    t = torch.softmax(teacher(inputs) / 3, 1)
    s = torch.log_softmax(student_logits / 3, 1)
    expected = 9 * (t * (t.log() - s)).sum(1).mean()
    torch.testing.assert_close(distillation(student_logits, inputs), expected)
    hard = F.cross_entropy(student_logits, torch.arange(6) % 4)
    torch.testing.assert_close(mixed_loss(hard, distillation, student_logits, inputs),
                               0.3 * hard + 0.7 * expected)
    assert mixed_loss(hard, None, student_logits, inputs) is hard


def test_the_teacher_sees_the_student_batch_at_its_own_side():
    seen = []
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 28 * 28, 3))
    teacher.register_forward_hook(lambda module, args, out: seen.append(args[0].shape))
    distillation = Distillation(teacher, (32, 32), (16, 16), temperature=2.0, weight=0.5)
    distillation(torch.randn(2, 3), torch.rand(2, 3, 14, 14))  # a 14-pixel crop of a 16 side
    assert seen == [(2, 3, 28, 28)]


def test_train_with_a_teacher_records_it_and_learns_its_outputs(digits_run, tmp_path):
    run = cnnlab.train(data="digits", model="simple", epochs=1, teacher=str(digits_run.path),
                       out=str(tmp_path / "taught"), calibrate=False, log="none", quiet=True)
    assert read_card(run.path).teacher == str(digits_run.path)
    alone = cnnlab.train(data="digits", model="simple", epochs=1, out=str(tmp_path / "alone"),
                         calibrate=False, log="none", quiet=True)
    assert run.history[0].train_loss != alone.history[0].train_loss


def test_a_teacher_of_other_channels_is_one_line(digits_run, tmp_path):
    with pytest.raises(CnnlabError, match="takes 1-channel images, this data has 3"):
        cnnlab.train(data={"name": "digits", "channels": 3}, model="simple", epochs=1,
                     teacher=str(digits_run.path), out=str(tmp_path / "run"), quiet=True)


def test_a_teacher_of_other_classes_is_one_line(digits_run, tmp_path):
    make_folder(tmp_path / "shapes", per_class=8, broken=False)
    result = run_cnnlab("train", "--data", str(tmp_path / "shapes"), "--image-size", "8",
                        "--channels", "1", "--model", "simple", "--epochs", "1", "--teacher",
                        str(digits_run.path), "--out", str(tmp_path / "run"), "--quiet")
    assert result.returncode == 2
    assert "same classes" in error_line(result.stderr)


def test_init_takes_another_side_where_the_network_pools_globally(tmp_path):
    card_like = cnnlab.train(data={"name": "digits", "image_size": 16, "per_class": 20},
                             model="conv(8, k=3) relu gap dense", epochs=1, calibrate=False,
                             log="none", quiet=True, out=str(tmp_path / "a"))
    smaller = cnnlab.train(data={"name": "digits", "image_size": 12, "per_class": 20},
                           init=str(card_like.path), epochs=1, calibrate=False, log="none",
                           quiet=True, out=str(tmp_path / "b"))
    assert read_card(smaller.path).input.height == 12
    assert takes_any_side(read_card(card_like.path))


def test_candidate_sides_follow_the_network(digits_run):
    card = read_card(digits_run.path)  # `simple` flattens into a dense layer: its side only
    assert not takes_any_side(card)
    assert candidate_sides(card, None) == [card.input.height]
    with pytest.raises(CnnlabError, match="takes only"):
        candidate_sides(card, "16")
    lite = card.replace(architecture="timm:efficientnet_lite0", input=card.input.__class__(3, 224, 224),
                        preprocessing=card.preprocessing.__class__(mean=(0.5,) * 3, std=(0.2,) * 3))
    assert candidate_sides(lite, None) == [224, 168, 128]
    names = [c.name for c in candidates(lite, None, "0,0.5")]
    assert "224px" not in names and "224px-pruned50" in names and "128px" in names
    with pytest.raises(CnnlabError, match="--prune"):
        candidates(card, None, "1.5")


def _row(name, val, ms, role="candidate"):
    return CandidateRow(name=name, role=role, side=8, pruned=0.5, flip_tta=False,
                        val_accuracy=val, test_accuracy=val, one_thread_ms=ms,
                        one_thread_p95_ms=ms, all_threads_ms=ms, all_threads_p95_ms=ms,
                        images_per_second=1000 / ms, file_mb=1.0, parameters=10, flops=100.0)


def test_the_choice_is_the_fastest_within_the_budget():
    teacher = _row("teacher", 0.95, 10.0, "teacher")
    rows = [_row("a", 0.945, 5.0), _row("b", 0.90, 1.0), _row("c", 0.94, 2.0)]
    chosen, reason = choose(rows, teacher, max_drop=1.5, target_ms=None)
    assert chosen.name == "c" and "5.0x" in reason
    chosen, _ = choose(rows, teacher, max_drop=0.5, target_ms=None)
    assert chosen.name == "a"
    chosen, reason = choose(rows, teacher, max_drop=1.5, target_ms=1.5)
    assert chosen is None and "closest is b" in reason
    chosen, reason = choose(rows, teacher, max_drop=0.1, target_ms=None)
    assert chosen is None and "closest is a" in reason


def test_the_pareto_front_keeps_what_nothing_beats():
    rows = [_row("a", 0.9, 1.0), _row("b", 0.85, 2.0), _row("c", 0.95, 3.0), _row("d", 0.93, 4.0)]
    assert [row.name for row in pareto_front(rows, "val_accuracy")] == ["a", "c"]


def test_compress_gives_a_run_folder_that_every_verb_takes(compressed, tmp_path):
    record, folder = compressed.record, compressed.run
    assert folder is not None and folder.name == "teacher-compressed"
    card = read_card(folder)
    assert card.pruned == 0.5 and card.teacher == record.teacher
    assert [row.role for row in record.rows][:2] == ["teacher", "candidate"]
    assert record.chosen in {row.name for row in record.rows}
    assert (folder / "export" / "model.onnx").is_file() and (folder / "compress.png").is_file()
    assert CompressRecord.read(compressed.folder).rows == record.rows
    assert cnnlab.evaluate(folder, quiet=True).metrics.accuracy > 0.5
    prediction = cnnlab.load(folder).predict(np.zeros((8, 8), dtype=np.uint8))[0]
    assert prediction[0].name in card.class_names
    assert not any(p.name.startswith(".") for p in folder.parent.iterdir())  # no work left


def test_every_accuracy_of_the_table_is_onnx_runtimes_scored_by_scikit_learn(compressed):
    """Recomputed here from the exported file: ONNX Runtime's session, scikit-learn's score."""
    import onnxruntime as ort

    folder = compressed.run
    card = read_card(folder)
    test = run_dataset(folder, card).test
    session = ort.InferenceSession(str(folder / "export" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    predicted, truth = [], []
    for images, labels in test.batches(128):
        logits = session.run(None, {"pixels": to_float(images).numpy()})[0]
        predicted.extend(logits.argmax(1))
        truth.extend(labels.tolist())
    name = compressed.record.chosen.removesuffix("-int8")
    row = compressed.record.row(name)
    assert row.test_accuracy == pytest.approx(accuracy_score(truth, predicted), abs=1e-12)
    teacher, teacher_card = load_model(compressed.record.teacher)
    with torch.no_grad():
        eager = [teacher(to_float(images)).argmax(1) for images, _ in test.batches(128)]
    assert compressed.record.teacher_row.test_accuracy == pytest.approx(
        accuracy_score(truth, torch.cat(eager)), abs=1e-12)


def test_a_budget_no_candidate_meets_writes_no_run_folder(digits_run, tmp_path):
    teacher = tmp_path / "teacher"
    shutil.copytree(digits_run.path, teacher)
    (tmp_path / ".teacher-compressed-work-999999999-x").mkdir()  # left by a killed compress
    result = run_cnnlab("compress", str(teacher), "--epochs", "1", "--prune", "0.7",
                        "--timing", "0.05", "--target-ms", "0.000001")
    assert result.returncode == 1, result.stderr
    assert "no candidate is within" in result.stdout and "closest is 8px-pruned70" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher"]
    record = json.loads((teacher / "compress" / "compress.json").read_text())
    assert record["chosen"] is None and len(record["rows"]) == 2
    assert "candidate 1/1: 8px-pruned70" in result.stderr and "epoch 1/1" in result.stderr


def test_a_run_without_its_data_is_one_line(tmp_path):
    make_folder(tmp_path / "shapes", per_class=10, broken=False)
    run = cnnlab.train(data={"name": str(tmp_path / "shapes"), "image_size": 8},
                       model="simple", epochs=1, quiet=True, log="none", calibrate=False,
                       out=str(tmp_path / "run"))
    shutil.rmtree(tmp_path / "shapes")
    result = run_cnnlab("compress", str(run.path), "--epochs", "1")
    assert result.returncode == 2
    assert "shapes" in error_line(result.stderr)
    assert not (tmp_path / "run-compressed").exists()


@pytest.mark.parametrize("flags, message", [
    (["--sizes", "16"], "takes only 8x8"),
    (["--prune", "0"], "no candidate"),
    (["--prune", "half"], "comma-separated numbers"),
    (["--target-ms", "1", "--speedup", "2"], "not both"),
])
def test_bad_compress_settings_are_one_line(digits_run, tmp_path, flags, message):
    teacher = tmp_path / "teacher"
    shutil.copytree(digits_run.path, teacher)
    result = run_cnnlab("compress", str(teacher), "--timing", "0.05", *flags)
    assert result.returncode == 2
    assert message in error_line(result.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher"]


def test_an_export_is_not_a_teacher(compressed):
    result = run_cnnlab("compress", str(compressed.run / "export"))
    assert result.returncode == 2
    assert "is an export" in error_line(result.stderr)


def test_unlabelled_images_are_labelled_by_the_teacher_and_added(digits_run, tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    folder = tmp_path / "unlabelled" / "nested"
    folder.mkdir(parents=True)
    digits = load_digits()
    for index in range(30):
        pixels = (digits.images[-index - 1] * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    run = cnnlab.train(data="digits", model="simple", epochs=1, teacher=str(digits_run.path),
                       unlabelled=str(tmp_path / "unlabelled"), out=str(tmp_path / "run"),
                       calibrate=False, log="none", quiet=True)
    alone = cnnlab.train(data="digits", model="simple", epochs=1, out=str(tmp_path / "alone"),
                         calibrate=False, log="none", quiet=True)
    assert run.history[0].train_loss != alone.history[0].train_loss
    from cnnlab.data import load_dataset
    from cnnlab.train.distill import teacher_labelled

    data = load_dataset(run.config.data)
    taught = teacher_labelled(data, run.config, torch.device("cpu"), lambda text: None)
    assert len(taught.train) == len(data.train) + 30
    teacher, _ = load_model(digits_run.path)
    extra = taught.train.images[-30:]
    with torch.no_grad():
        expected = teacher(to_float(extra)).argmax(1)
    assert torch.equal(taught.train.labels[-30:], expected)


@pytest.mark.parametrize("make, message", [
    (lambda root: root.mkdir(), "no images in it"),
    (lambda root: None, "no such folder"),
])
def test_an_unlabelled_folder_without_images_is_one_line(digits_run, tmp_path, make, message):
    make(tmp_path / "empty")
    result = run_cnnlab("train", "--data", "digits", "--model", "simple", "--epochs", "1",
                        "--teacher", str(digits_run.path), "--unlabelled", str(tmp_path / "empty"),
                        "--out", str(tmp_path / "run"), "--quiet")
    assert result.returncode == 2
    assert message in error_line(result.stderr)


def test_unlabelled_needs_a_teacher(tmp_path):
    (tmp_path / "pool").mkdir()
    with pytest.raises(CnnlabError, match="add --teacher"):
        cnnlab.train(data="digits", model="simple", epochs=1, unlabelled=str(tmp_path / "pool"),
                     out=str(tmp_path / "run"), quiet=True)


def test_compare_and_report_show_the_teacher_and_its_compressed_run(compressed, tmp_path):
    teacher = compressed.record.teacher
    comparison = cnnlab.compare(teacher, compressed.run, out=str(tmp_path / "compare"),
                                quiet=True)
    teacher_cost, compressed_cost = comparison.costs
    assert teacher_cost == compressed.record.teacher_row
    assert compressed_cost == compressed.record.row(compressed.record.chosen)
    saved = json.loads((tmp_path / "compare" / "compare.json").read_text())
    assert saved["cost"][1]["parameters"] == compressed_cost.parameters
    page = cnnlab.report(compressed.run).read_text()
    assert "compression of teacher" in page and compressed.record.chosen in page
    assert "50% of its channels pruned, distilled from" in page
    summary = cnnlab.summary(str(compressed.run))
    pruned, _ = load_model(compressed.run)
    assert summary.summary.params == parameter_count(pruned)


def test_the_tables_flops_and_parameters_are_pytorchs(compressed):
    """FLOPs of the compressed network against PyTorch's own FLOP counter on the same model."""
    from torch.utils.flop_counter import FlopCounterMode

    model, card = load_model(compressed.run)
    row = compressed.record.row(compressed.record.chosen.removesuffix("-int8"))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.rand(1, *card.input.shape))
    passes = 2 if row.flip_tta else 1
    assert row.flops == pytest.approx(passes * counter.get_total_flops(), rel=1e-6)
    assert row.parameters == sum(p.numel() for p in model.parameters())


def test_a_choice_without_flip_tta_reports_the_accuracy_without_it(run_copy):
    """Training measured the test split with the mirror images; the shipped model runs without."""
    from cnnlab.compress.run import _set_flip
    from cnnlab.run.folder import write_card

    write_card(run_copy, read_card(run_copy).replace(flip_tta=True))
    _set_flip(run_copy, dataclasses.replace(_row("8px-no-tta", 0.9, 1.0), test_accuracy=0.875))
    assert not read_card(run_copy).flip_tta
    assert read_card(run_copy).test_accuracy == 0.875
    assert json.loads((run_copy / "results.json").read_text())["test_accuracy"] == 0.875
