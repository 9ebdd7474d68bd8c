"""Honest splits: training says which folder is used for what, a split the final model was fitted
on is never reported as held out, and --test-fraction holds out a test split from a folder
without one."""

import json

import pytest
import torch

import cnnlab
from cnnlab.cli import main
from cnnlab.config import DataConfig, load_config
from cnnlab.data import load_dataset

from .helpers import make_shape_folder, photo_slice


@pytest.fixture(scope="module")
def tutorial_layout(flowers12, tmp_path_factory):
    """The PyTorch tutorial's layout: train/ and val/ folders, no test/."""
    root = photo_slice(flowers12, tmp_path_factory.mktemp("tutorial"), ["daisy", "sunflower"], 16, 6)
    (root / "test").rename(root / "val")
    return root


@pytest.fixture(scope="module")
def probe_run(tutorial_layout, tmp_path_factory):
    return cnnlab.train(data={"name": str(tutorial_layout), "image_size": 96},
                        model="timm:efficientnet_lite0", pretrained=True, freeze="backbone",
                        quiet=True, out=str(tmp_path_factory.mktemp("runs") / "probe"))


def test_training_names_the_folder_of_each_split(tutorial_layout, tmp_path, capsys):
    assert main(["train", "--data", str(tutorial_layout), "--model", "conv(4) relu gap dense",
                 "--image-size", "32", "--epochs", "1", "--out", str(tmp_path / "r")]) == 0
    captured = capsys.readouterr()
    out = captured.out + captured.err
    name = tutorial_layout.name
    assert (f"splits: train 32 images ({name}/train/), validation 12 images ({name}/val/), "
            f"test: none") in " ".join(out.split())
    assert "--test-fraction" in out


@pytest.mark.slow  # minutes of the plain suite: run with -m slow, as CI does
def test_the_probes_refit_on_val_is_recorded_and_val_is_not_reported_as_held_out(
        probe_run, capsys):
    card = json.loads((probe_run.path / "model.json").read_text())
    assert card["fitted_on"] == ["train", "val"]
    metrics = cnnlab.evaluate(probe_run.path, split="val", max_shift=0, quiet=True).metrics
    assert metrics.held_out is False
    saved = json.loads((probe_run.path / "evaluate-val" / "metrics.json").read_text())
    assert saved["held_out"] is False
    assert main(["evaluate", str(probe_run.path), "--split", "val", "--max-shift", "0"]) == 0
    out = capsys.readouterr().out
    assert "val split (NOT held out: the model was fitted on it)" in " ".join(out.split())


def test_a_missing_test_split_points_to_test_fraction(probe_run, capsys):
    assert main(["evaluate", str(probe_run.path)]) == 2
    err = capsys.readouterr().err
    assert "no test split: train with --test-fraction 0.2" in err
    assert "--split val" not in err  # the model was fitted on val: not offered as a substitute


def test_test_fraction_holds_out_a_stratified_seeded_test_split(tmp_path):
    make_shape_folder(tmp_path / "photos", per_class=20)
    config = DataConfig(name=str(tmp_path / "photos"), test_fraction=0.25)
    first, again = load_dataset(config), load_dataset(config)
    assert torch.bincount(first.test.labels).tolist() == [5, 5, 5]
    assert first.test.paths == again.test.paths  # the same images every run
    assert not set(first.test.paths) & (set(first.train.paths) | set(first.val.paths))
    assert first.sources["test"] == "25% of photos/ held out per class (seed 0)"
    other = load_dataset(DataConfig(name=str(tmp_path / "photos"), test_fraction=0.25,
                                    split_seed=1))
    assert other.test.paths != first.test.paths


def test_a_flat_folder_with_test_fraction_gets_a_test_accuracy(tmp_path):
    make_shape_folder(tmp_path / "photos", per_class=20)
    run = cnnlab.train(data={"name": str(tmp_path / "photos"), "test_fraction": 0.2},
                       model="conv(4) relu gap dense", epochs=1, quiet=True, out=str(tmp_path / "r"))
    assert run.test_accuracy is not None
    assert load_config(run.path / "config.yaml").data.test_fraction == 0.2
    assert cnnlab.evaluate(run.path, max_shift=0, quiet=True).metrics.images == 12
