"""evaluate's translation test runs by default where a few pixels matter (small images from
scratch) and is left out for photos and pretrained networks, where it cost most of the time."""

import pytest

import cnnlab
from cnnlab.evaluate.run import default_max_shift
from cnnlab.run.contract import ModelCard


def _card(side: int, pretrained: bool) -> ModelCard:
    return ModelCard.from_dict({"format": "cnnlab-model/1", "name": "n", "pretrained": pretrained,
                                "architecture": {"spec": "n"}, "class_names": ["a", "b"],
                                "input": {"channels": 3, "height": side, "width": side},
                                "preprocessing": {"mean": [0, 0, 0], "std": [1, 1, 1]}})


@pytest.mark.parametrize(("side", "pretrained", "shift"), [
    (28, False, 3), (64, False, 3), (224, False, 0), (32, True, 0), (224, True, 0)])
def test_the_default_shift_fits_the_image(side, pretrained, shift):
    assert default_max_shift(_card(side, pretrained)) == shift


def test_a_small_run_gets_the_test_and_the_flag_still_rules(digits_run, tmp_path):
    default = cnnlab.evaluate(digits_run.path, quiet=True, out=str(tmp_path / "a")).metrics
    assert [row.shift for row in default.translation] == [0, 1, 2, 3]
    off = cnnlab.evaluate(digits_run.path, max_shift=0, quiet=True, out=str(tmp_path / "b")).metrics
    assert off.translation == ()
