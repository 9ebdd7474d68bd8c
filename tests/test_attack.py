"""Attacks and adversarial training: the eps-ball and [0, 1] hold, robust accuracy is bounded by
clean accuracy, PGD beats FGSM, eps 0 changes nothing, and adversarial training buys robustness."""

import csv
import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.attack.attacks import FGSMAttack, make_attack, training_attack
from cnnlab.attack.robustness import attack_run, measure, parse_eps
from cnnlab.base.errors import CnnlabError
from cnnlab.cli import main
from cnnlab.config import DataConfig
from cnnlab.data import load_dataset
from cnnlab.models import create_model
from cnnlab.run.folder import load_checkpoint, load_model
from cnnlab.run.inference import predict_logits
from cnnlab.train import loop


@pytest.fixture(scope="module")
def digits_test():
    return load_dataset(DataConfig(name="digits")).test


@pytest.fixture(scope="module")
def model(digits_run):
    return load_model(digits_run.path)[0]


def _pixels(split, count=128):
    return split.images[:count].float() / 255, split.labels[:count]


def _within(adversarial, images, eps, norm):
    delta = (adversarial - images).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    return bool((size <= eps * (1 + 1e-5) + 1e-6).all())


ATTACKS = [("fgsm", "linf", 0.05), ("fgsm", "linf", 0.2), ("pgd", "linf", 0.03),
           ("pgd", "linf", 0.1), ("pgd", "l2", 0.5), ("pgd", "l2", 1.5)]


@pytest.mark.parametrize(("method", "norm", "eps"), ATTACKS)
def test_adversarial_images_stay_in_the_eps_ball_and_in_range(model, digits_test, method, norm, eps):
    images, labels = _pixels(digits_test)
    adversarial = make_attack(model, method, eps, norm=norm)(images, labels)
    assert adversarial.shape == images.shape
    assert _within(adversarial, images, eps, norm)
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert not torch.equal(adversarial, images)  # it did move


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_training_attacks_stay_in_the_ball_and_leave_batchnorm_alone(model, digits_test, method):
    images, labels = _pixels(digits_test)
    model.train()
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    try:
        attack = training_attack(model, method, 0.1, steps=3, generator=torch.Generator().manual_seed(0))
        adversarial = attack(images, labels)
        assert model.training  # the mode comes back
    finally:
        model.eval()
    assert _within(adversarial, images, 0.1, "linf")
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    # BatchNorm's running statistics are not moved by the attack's forward passes
    assert all(torch.equal(buffers[name], b) for name, b in model.named_buffers())


def test_fgsm_random_start_draws_from_the_generator(model, digits_test):
    images, labels = _pixels(digits_test, 32)

    def run(seed):
        attack = FGSMAttack(model, 0.1, random_start=True, generator=torch.Generator().manual_seed(seed))
        return attack(images, labels)

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_eps_zero_gives_exactly_the_clean_images_and_accuracy(model, digits_test, digits_run):
    images, labels = _pixels(digits_test)
    for method in ("fgsm", "pgd"):
        assert torch.equal(make_attack(model, method, 0.0)(images, labels), images)
    result = attack_run(digits_run.path, method="pgd", eps="0", limit=None, device="cpu")
    logits, targets = predict_logits(model, digits_test, torch.device("cpu"))
    accuracy = (logits.argmax(1) == targets).sum().item() / len(targets)
    assert result.metrics.images == len(digits_test) == 359
    assert result.metrics.results[0].robust_accuracy == result.metrics.clean_accuracy
    assert result.metrics.clean_accuracy == accuracy


@pytest.fixture(scope="module")
def tallies(model, digits_test):
    eps = [0.0, 0.02, 0.05, 0.1, 0.2]
    return {method: measure(model, digits_test, eps=eps, method=method, limit=None)
            for method in ("fgsm", "pgd")}


def test_robust_accuracy_never_exceeds_clean_accuracy(tallies):
    for tally in tallies.values():
        assert tally.robust[0] == tally.clean
        for robust, adversarial in zip(tally.robust, tally.adversarial, strict=True):
            assert robust <= tally.clean and adversarial <= tally.clean
        assert tally.robust == sorted(tally.robust, reverse=True)  # worst case over smaller eps
        assert tally.robust[-1] < tally.clean  # and the attack does bite


def test_pgd_is_at_least_as_strong_as_fgsm(tallies):
    fgsm, pgd = tallies["fgsm"], tallies["pgd"]
    assert all(p <= f for p, f in zip(pgd.robust, fgsm.robust, strict=True))
    assert pgd.robust[-1] < fgsm.robust[-1]  # strictly stronger at the largest eps


def test_attack_run_writes_table_and_figures(digits_run):
    metrics = cnnlab.attack(digits_run.path, method="fgsm", eps=[0.1, 0, 0.05], limit=100).metrics
    assert [row.eps for row in metrics.results] == [0, 0.05, 0.1]
    assert metrics.images == 100 and metrics.method == "fgsm"
    folder = digits_run.path / "attack-fgsm"  # FGSM's results beside PGD's, not over them
    assert json.loads((folder / "metrics.json").read_text())["results"] == \
        [row.to_dict() for row in metrics.results]
    for name in ("robust_accuracy.png", "examples.png"):
        with Image.open(folder / name) as image:
            assert image.size[0] > 200


def test_parse_eps():
    assert parse_eps("0.1, 0,0.03,0.1") == [0.0, 0.03, 0.1]
    for bad in ("abc", "0.1,-0.1", "", "nan"):
        with pytest.raises(CnnlabError):
            parse_eps(bad)


def _cnnlab(*args):
    return subprocess.run([sys.executable, "-m", "cnnlab", *args], capture_output=True, text=True,
                          timeout=300)


def test_attack_command_prints_the_table(digits_run):
    result = _cnnlab("attack", str(digits_run.path), "--eps", "0,0.1", "--limit", "64")
    assert result.returncode == 0, result.stderr
    assert "robust accuracy" in result.stdout and "0.1" in result.stdout
    assert "metrics.json, robust_accuracy.png, examples.png" in result.stdout
    assert "pixel units" in _cnnlab("attack", "--help").stdout


ERRORS = [
    (["--eps", "abc"], "--eps must be numbers separated by commas"),
    (["--eps", "0,-0.1"], "--eps must be a number >= 0"),
    (["--method", "pgdd"], "unknown attack method 'pgdd' (did you mean 'pgd'?)"),
    (["--norm", "linff"], "unknown norm 'linff' (did you mean 'linf'?)"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--method", "fgsm", "--norm", "l2"], "FGSM is an L-infinity attack"),
    (["--limit", "0"], "--limit must be at least 1"),
]


@pytest.mark.parametrize(("args", "message"), ERRORS)
def test_attack_user_errors_are_one_line(digits_run, capsys, args, message):
    assert main(["attack", str(digits_run.path), *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_attack_user_error_exits_with_code_2(digits_run):
    result = _cnnlab("attack", str(digits_run.path), "--eps", "0.1,x")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: --eps must be numbers separated by commas, like 0,0.01,8/255,0.1; got '0.1,x'"]


def test_bad_adversarial_settings_are_errors(tmp_path):
    for settings, message in (({"adversarial": "pdg"}, "did you mean 'pgd'?"),
                              ({"adversarial": "fgsm", "adv_eps": 0}, "--adv-eps must be > 0"),
                              ({"adversarial": "pgd", "adv_steps": 0}, "--adv-steps must be at least 1")):
        with pytest.raises(CnnlabError, match=message.replace("?", r"\?")):
            cnnlab.train(data="digits", epochs=1, out=str(tmp_path / "x"), quiet=True, **settings)
    assert not (tmp_path / "x").exists()  # refused before a run folder was made


def _robust_accuracy(run_path, split, eps):
    model, _ = load_model(run_path)
    tally = measure(model, split, eps=[eps], method="pgd", limit=None)
    return tally.robust[0] / tally.images, tally.clean / tally.images


SHORT_RUN = {"data": "digits", "epochs": 5, "batch_size": 64, "seed": 0, "quiet": True}


@pytest.fixture(scope="module")
def standard_run(tmp_path_factory):
    return cnnlab.train(out=str(tmp_path_factory.mktemp("runs") / "standard"), **SHORT_RUN)


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_adversarial_training_raises_pgd_robust_accuracy(tmp_path, digits_test, standard_run, method):
    trained = cnnlab.train(out=str(tmp_path / method), adversarial=method, adv_eps=0.1, adv_steps=3,
                           **SHORT_RUN)
    with open(trained.path / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert "val_robust_acc" in rows[0] and all(0 < float(r["val_robust_acc"]) <= 1 for r in rows)
    assert "val_robust_acc" not in (standard_run.path / "metrics.csv").read_text()
    standard_robust, standard_clean = _robust_accuracy(standard_run.path, digits_test, 0.1)
    trained_robust, trained_clean = _robust_accuracy(trained.path, digits_test, 0.1)
    assert trained_robust > standard_robust + 0.05, (standard_robust, trained_robust)
    assert trained_clean > 0.9 and standard_clean > 0.9


class _Stop(Exception):
    pass


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_adversarial_training_resumes_exactly(tmp_path, monkeypatch, method):
    settings = {"data": "digits", "epochs": 2, "batch_size": 64, "adversarial": method,
                "adv_steps": 2, "quiet": True}
    reference = cnnlab.train(out=str(tmp_path / "reference"), **settings)

    def stop_after_first_epoch(self, row, total_epochs):
        raise _Stop  # last.ckpt of epoch 1 is already written

    with monkeypatch.context() as patch:
        patch.setattr(loop.Reporter, "end_epoch", stop_after_first_epoch)
        with pytest.raises(_Stop):
            cnnlab.train(out=str(tmp_path / "stopped"), **settings)
    torch.manual_seed(12345)  # resume must not depend on the RNG state it finds
    cnnlab.train(resume=tmp_path / "stopped", quiet=True)
    a = load_checkpoint(reference.path / "last.ckpt")["model"]
    b = load_checkpoint(tmp_path / "stopped" / "last.ckpt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_attacks_need_only_a_module():
    model, _, _ = create_model("simple", input_shape=(1, 8, 8), num_classes=10, mean=[0.5], std=[0.25])
    images, labels = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    model.train()
    adversarial = make_attack(model, "pgd", 0.1, steps=2)(images, labels)
    assert _within(adversarial, images, 0.1, "linf") and model.training
