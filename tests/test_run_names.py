"""Run folders are named by what differs, the README's paths are those training writes, a run
folder that is not there is answered with the nearest one that is, and an --out that holds a run
or is a file is never written over."""

import re
from pathlib import Path

import pytest

from cnnlab.cli import main
from cnnlab.config import DataConfig, TrainConfig
from cnnlab.run.contract import ModelCard
from cnnlab.train.loop import run_name

from .helpers import run_cnnlab as _cli

README = Path(__file__).resolve().parents[1] / "README.md"


def _card(name: str) -> ModelCard:
    return ModelCard.from_dict({"format": "cnnlab-model/1", "name": name,
                                "architecture": {"spec": name}, "class_names": ["a", "b"],
                                "input": {"channels": 3, "height": 8, "width": 8},
                                "preprocessing": {"mean": [0, 0, 0], "std": [1, 1, 1]}})


def test_fine_tuning_and_the_probe_get_names_that_say_which():
    card = _card("timm:efficientnet_lite0")
    fine = TrainConfig(data=DataConfig(name="../shared/data/flowers12/"), pretrained=True)
    probe = TrainConfig(data=DataConfig(name="../shared/data/flowers12"), pretrained=True,
                        freeze="backbone")
    assert run_name(fine, card) == "flowers12-timm:efficientnet_lite0"  # ':' becomes '-' on disk
    assert run_name(probe, card) == "flowers12-timm:efficientnet_lite0-probe"


def test_the_readmes_flowers12_paths_are_the_folder_training_writes():
    paths = set(re.findall(r"runs/flowers12[\w.-]*", README.read_text()))
    written = {"runs/flowers12-timm-efficientnet_lite0",  # fine-tuning
               "runs/flowers12-timm-efficientnet_lite0-probe",  # --freeze backbone
               "runs/flowers12-timm-efficientnet_lite0-compressed"}  # compress, beside its teacher
    assert "runs/flowers12-timm-efficientnet_lite0" in paths and paths <= written


@pytest.mark.parametrize(("asked", "meant"), [
    ("flowers12", "flowers12-timm-efficientnet_lite0"),
    ("flowers12-timm-efficientnet_lite", "flowers12-timm-efficientnet_lite0")])
def test_a_missing_run_folder_suggests_the_nearest(tmp_path, capsys, asked, meant):
    (tmp_path / "runs" / meant).mkdir(parents=True)
    (tmp_path / "runs" / "digits-simple").mkdir()
    assert main(["evaluate", str(tmp_path / "runs" / asked)]) == 2
    err = capsys.readouterr().err
    assert f"no such run folder (did you mean {tmp_path / 'runs' / meant}?)" in " ".join(err.split())


def test_model_card_read_takes_a_string_or_a_run_folder(digits_run):
    assert ModelCard.read(str(digits_run.path / "model.json")).class_names[0] == "0"
    assert ModelCard.read(str(digits_run.path)).num_classes == 10


def test_an_existing_out_folder_is_kept_and_the_new_run_says_where_it_went(run_copy):
    before = sorted(p.name for p in run_copy.iterdir())
    result = _cli("train", "--data", "digits", "--model", "conv(4) relu flatten dense", "--epochs",
                  "1", "--out", str(run_copy), "--quiet")
    assert result.returncode == 0, result.stderr
    assert f"{run_copy} holds a run already: this run goes to {run_copy}-2" in result.stderr
    assert sorted(p.name for p in run_copy.iterdir()) == before


def test_an_out_that_is_a_file_is_refused_before_the_data_loads(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("a file")
    assert main(["train", "--data", "digits", "--out", str(taken)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert taken.read_text() == "a file"
