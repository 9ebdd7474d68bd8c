"""A mistyped flag is answered from the verb's own flags, and other tools' names for them."""

import pytest

from cnnlab.cli import main


@pytest.mark.parametrize(("args", "meant"), [
    (["train", "--batch", "32"], "--batch-size"),
    (["train", "--learning-rate", "0.1"], "--lr"),
    (["train", "--gpu"], "--device cuda"),
    (["train", "--val-split", "0.2"], "--val-fraction"),
    (["train", "--freeze-backbone"], "--freeze backbone"),
    (["train", "--epoch=3"], "--epochs"),
    (["serve", "RUN", "--workers", "2"], "--threads"),
    (["evaluate", "RUN", "--batch", "8"], "--batch-size"),
])
def test_did_you_mean_names_a_flag_of_the_same_verb(capsys, args, meant):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"(did you mean '{meant}'?)" in err and len(err.strip().splitlines()) == 1


def test_no_suggestion_from_another_verbs_flags(capsys):
    assert main(["train", "--max-batc", "4"]) == 2  # --max-batch is serve's
    assert "did you mean" not in capsys.readouterr().err
