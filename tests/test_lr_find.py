"""The learning-rate finder: fastai's rules on known curves; the sweep leaves the trainer exactly as
it found it, so training after it is training without it; lr-find and train --lr-find end to end."""

import json
import math

import pytest
import torch

import cnnlab
from cnnlab.base.distributed import Ranks
from cnnlab.base.errors import CnnlabError
from cnnlab.cli import main
from cnnlab.config import TrainConfig, apply_overrides
from cnnlab.train.loop import _prepare, train_one_epoch
from cnnlab.train.lr_find import LrFinding, minimum, smooth, steep, sweep, valley
from cnnlab.train.progress import Reporter
from cnnlab.train.settings import LrFindSettings

SMALL = {"data.name": "digits", "model": "simple", "batch_size": 64, "epochs": 2, "threads": 2,
         "device": "cpu"}


def _trainer(tmp_path, **extra):
    config = apply_overrides(TrainConfig(), {**SMALL, "out": str(tmp_path / "run"), **extra})
    _, data, trainer, _ = _prepare(config, None, Reporter(quiet=True), Ranks(),
                                   torch.device("cpu"))
    return trainer, data


def _state(trainer):
    return ({k: v.clone() for k, v in trainer.model.state_dict().items()},
            trainer.generator.get_state(), torch.get_rng_state(),
            [g["lr"] for g in trainer.optimizer.param_groups], trainer.scheduler.state_dict())


def test_rules_on_a_known_curve():
    lrs = [10 ** (-7 + 8 * i / 99) for i in range(100)]
    # flat, then a fall between 1e-4 and 1e-1, then a blow-up
    losses = [2.0 - 1.5 / (1 + math.exp(-3 * (math.log10(lr) + 2.5))) + (lr > 0.3) * 10 * lr
              for lr in lrs]
    steepest, _ = steep(lrs, losses)
    assert 10 ** -3 < steepest < 10 ** -2  # the sigmoid falls fastest at 10^-2.5
    least, index = minimum(lrs, losses)
    assert least == pytest.approx(lrs[index] / 10) and 1e-2 < lrs[index] < 0.5
    suggested, _ = valley(lrs, losses)
    assert 1e-7 < suggested < lrs[index]  # somewhere on the fall, before the minimum
    assert smooth([1.0, 1.0, 1.0]) == pytest.approx([1.0, 1.0, 1.0])  # debiased from the start


def test_the_sweep_restores_the_trainer_bit_for_bit(tmp_path):
    trainer, data = _trainer(tmp_path, ema=0.9)
    before = _state(trainer)
    lrs, losses, _ = sweep(trainer, data, LrFindSettings(steps=30))
    after = _state(trainer)
    assert len(lrs) == len(losses) == 30 and lrs[0] == pytest.approx(1e-7)
    assert before[0].keys() == after[0].keys()
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])  # batch norm too
    assert torch.equal(before[1], after[1]) and torch.equal(before[2], after[2])
    assert before[3] == after[3] and before[4] == after[4]
    assert not trainer.optimizer.state  # no moments left from the sweep


def test_training_after_the_sweep_is_training_without_it(tmp_path):
    reporter = Reporter(quiet=True)
    first, data = _trainer(tmp_path)
    sweep(first, data, LrFindSettings(steps=20))
    train_one_epoch(first, data, reporter, 1)
    second, data = _trainer(tmp_path)
    train_one_epoch(second, data, reporter, 1)
    one, two = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(one[k], two[k]) for k in one)


def test_lr_find_command_and_train_with_it(tmp_path, capsys):
    out = tmp_path / "finder"
    assert main(["lr-find", "--data", "digits", "--model", "simple", "--batch-size", "64",
                 "--steps", "40", "--device", "cpu", "--threads", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    finding = LrFinding.read(out / "lr_find.json")
    assert f"--lr {finding.suggestion:.2g}" in printed
    assert set(finding.suggestions) == {"valley", "steep", "minimum"}
    assert (out / "lr_find.png").stat().st_size > 10_000
    run = cnnlab.train(data="digits", model="simple", batch_size=64, epochs=1, device="cpu",
                       threads=2, out=str(tmp_path / "run"), quiet=True, lr_find="steep")
    found = json.loads((run.path / "lr_find.json").read_text())
    assert run.config.lr == pytest.approx(found["suggestions"]["steep"])
    assert "lr:" in (run.path / "config.yaml").read_text()


def test_lr_find_errors(tmp_path, capsys):
    with pytest.raises(CnnlabError, match="--lr-find chooses the learning rate"):
        cnnlab.train(data="digits", lr=0.01, lr_find="valley", out=str(tmp_path / "x"), quiet=True)
    assert main(["train", "--lr", "find"]) == 2
    assert "to find one, train with --lr-find" in capsys.readouterr().err
    with pytest.raises(CnnlabError, match="unknown suggestion rule"):
        cnnlab.lr_find(data="digits", suggest="valey")
