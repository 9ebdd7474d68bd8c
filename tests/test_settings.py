"""Settings declared once: flags, defaults and checks come from the dataclass fields. Config files:
values of the wrong type and YAML that expands without bound are refused in one line, and
config.yaml records the values a run used."""

import argparse
import dataclasses
import tracemalloc
import typing
from dataclasses import dataclass
from pathlib import Path

import pytest

import cnnlab
from cnnlab.attack.settings import AttackSettings
from cnnlab.base.errors import CnnlabError
from cnnlab.base.settings import add_flags, build, option, resolve, values_from
from cnnlab.cli import build_parser, main
from cnnlab.config import TrainConfig, config_from_dict, flat_key, load_config
from cnnlab.evaluate.settings import EvaluateSettings
from cnnlab.explain.settings import ExplainSettings
from cnnlab.export.settings import ExportSettings
from cnnlab.predict.settings import PredictSettings

from .helpers import error_line as _one_error_line
from .helpers import run_cnnlab as _cli

VERB_SETTINGS = {"evaluate": (EvaluateSettings, ["RUN"]), "predict": (PredictSettings, ["RUN", "x.png"]),
                 "explain": (ExplainSettings, ["RUN"]), "attack": (AttackSettings, ["RUN"]),
                 "export": (ExportSettings, ["RUN"])}


def _parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


@pytest.mark.parametrize("verb", sorted(VERB_SETTINGS))
def test_a_verb_without_flags_gets_the_settings_defaults(verb):
    cls, positional = VERB_SETTINGS[verb]
    args = _parse(verb, *positional)
    assert args.settings is cls
    assert build(cls, values_from(args, cls)) == cls()


def test_every_verb_setting_has_a_flag_that_sets_it():
    for verb, (cls, positional) in VERB_SETTINGS.items():
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            kinds = set(typing.get_args(hints[field.name])) or {hints[field.name]}
            flag = "--" + field.name.replace("_", "-")
            if bool in kinds:  # a switch: the flag alone turns it on, or off where it is on
                if field.default is True:
                    flag = "--no-" + flag[2:]
                value = getattr(_parse(verb, *positional, flag), field.name)
                assert value is not field.default and isinstance(value, bool), (verb, flag)
                continue
            value = "7" if int in kinds else "0.5" if float in kinds else "x"
            if field.metadata["choices"]:
                value = field.metadata["choices"][-1]
            args = _parse(verb, *positional, flag, value)
            assert str(getattr(args, field.name)) == value, (verb, flag)


def _train_flags() -> dict[str, argparse.Action]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {flag: action for action in sub.choices["train"]._actions
            for flag in action.option_strings}


def _flagged(fields) -> list:
    """The fields a user sets (not those training records for itself, declared cli=False)."""
    return [f for f in fields if f.metadata.get("cli", True)]


def test_every_training_setting_is_a_flag():
    dests = {action.dest for action in _train_flags().values()}
    for field in _flagged(dataclasses.fields(TrainConfig)):
        if dataclasses.is_dataclass(field.default_factory):
            section = field.default_factory
            assert {f"{field.name}.{f.name}" for f in _flagged(dataclasses.fields(section))} <= dests
        else:
            assert field.name in dests


def test_switches_follow_the_default():
    flags = _train_flags()
    assert flags["--nesterov"].const is True  # off by default: the flag turns it on
    assert flags["--no-amp"].const is False and "--amp" not in flags  # on: the flag turns it off
    assert flags["--train-bn"].dest == "freeze_bn" and flags["--train-bn"].const is False
    assert flags["--flip"].const is True and flags["--no-flip"].const is False  # None: both


def test_unset_training_flags_leave_the_config_alone():
    args = _parse("train", "--epochs", "2", "--image-size", "16")
    given = {k: v for k, v in vars(args).items() if k not in ("verb", "command", "settings")}
    assert given == {"epochs": 2, "data.image_size": 16}


@dataclass(frozen=True)
class _Toy:
    size: int = option(3, "a size")
    rate: float = option(0.5, "a rate")
    name: str | None = option(None, "a name")
    mode: str = option("a", "a mode", choices=("a", "b"), kind="mode")
    fast: bool = option(False, "go fast")


def test_a_new_field_is_a_new_flag_with_its_default_in_the_help():
    parser = argparse.ArgumentParser()
    add_flags(parser, _Toy)
    assert "(default 3)" in parser.format_help()
    args = parser.parse_args(["--size", "4", "--fast"])
    assert build(_Toy, values_from(args, _Toy)) == _Toy(size=4, fast=True)


@pytest.mark.parametrize(("values", "message"), [
    ({"size": "3"}, "setting size must be a whole number, got '3'"),
    ({"size": True}, "setting size must be a whole number"),
    ({"rate": "fast"}, "setting rate must be a number"),
    ({"fast": 1}, "setting fast must be true or false"),
    ({"mode": "c"}, "unknown mode 'c'; choose from: a, b"),
    ({"sise": 3}, "unknown setting 'sise' (did you mean 'size'?)"),
])
def test_bad_values_are_one_clear_error(values, message):
    with pytest.raises(CnnlabError) as error:
        build(_Toy, values)
    assert message in str(error.value)


def test_values_are_converted_where_the_meaning_is_plain():
    toy = build(_Toy, {"rate": "5e-3", "name": Path("a/b")})  # YAML 1.1 reads 5e-3 as a string
    assert toy.rate == 0.005 and toy.name == "a/b"
    assert build(_Toy, {"rate": 2}).rate == 2.0


def test_library_options_override_settings_by_name():
    base = AttackSettings(steps=3)
    assert resolve(AttackSettings, base, {"limit": 5}) == AttackSettings(steps=3, limit=5)
    with pytest.raises(CnnlabError, match="did you mean 'steps'"):
        resolve(AttackSettings, None, {"stpes": 5})


def test_training_takes_flat_names_and_the_data_shorthand():
    assert flat_key("image_size") == "data.image_size" and flat_key("flip") == "augment.flip"
    assert flat_key("epochs") == "epochs"
    config = config_from_dict({"data": "digits", "epochs": 3})
    assert config.data.name == "digits" and config.epochs == 3
    with pytest.raises(CnnlabError, match="setting epochs must be a whole number, got '3'"):
        config_from_dict({"epochs": "3"})


@pytest.mark.parametrize(("yaml", "message"), [
    ("epochs: ten\n", "setting epochs must be a whole number, got 'ten'"),
    ("lr: fast\n", "setting lr must be a number, got 'fast'"),
    ("data:\n  strict: 'no'\n", "setting data.strict must be true or false, got 'no'"),
])
def test_config_files_with_wrong_types_are_refused(tmp_path, capsys, yaml, message):
    config = tmp_path / "run.yaml"
    config.write_text(yaml)
    assert main(["train", "--config", str(config)]) == 2
    assert message in capsys.readouterr().err


def _anchor_bomb(levels: int = 9) -> str:
    lines = ["augment:", "  rotation:", '    - &a0 ["lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"    - &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join([*lines, f"epochs: *a{levels}", ""])  # 6 * 9**9: two billion strings


@pytest.mark.parametrize(("text", "message"), [
    (_anchor_bomb(), "stands for more than 1,000,000 values once its YAML aliases"),
    ("loop: &a [*a]\nepochs: *a\n", "stands for more than 1,000,000 values"),
    ("epochs: " + "[" * 5000 + "]" * 5000 + "\n", "is not valid YAML"),
])
def test_a_config_file_that_expands_without_bound_is_one_line(tmp_path, capsys, text, message):
    config = tmp_path / "bomb.yaml"
    config.write_text(text)
    tracemalloc.start()
    try:
        with pytest.raises(CnnlabError, match="config file .*bomb.yaml"):
            load_config(config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 << 20  # the expansion would take hundreds of gigabytes
    assert main(["train", "--config", str(config)]) == 2
    assert message in _one_error_line(capsys.readouterr().err)


def test_anchors_and_aliases_within_bounds_still_load(tmp_path):
    config = tmp_path / "anchors.yaml"
    config.write_text("epochs: &n 3\npatience: *n\ndata:\n  name: digits\n")
    loaded = load_config(config)
    assert (loaded.epochs, loaded.patience, loaded.data.name) == (3, 3, "digits")


def test_config_yaml_records_the_values_used_and_runs_again(tmp_path):
    from cnnlab.base.devices import resolve_device

    first = tmp_path / "first"
    run = cnnlab.train(data="digits", model="conv(4) relu flatten dense", epochs=1,
                       out=str(first), quiet=True)
    recorded = load_config(first / "config.yaml")
    assert recorded.augment.flip is cnnlab.load(run.path).card.flip_augmented is False
    assert recorded.out == str(first) and recorded.device == resolve_device("auto").type
    again = _cli("train", "--config", str(first / "config.yaml"), "--quiet")
    assert again.returncode == 0, again.stderr
    rerun = load_config(tmp_path / "first-2" / "config.yaml")
    assert rerun.out == str(tmp_path / "first-2")
    assert rerun.to_dict() | {"out": None} == recorded.to_dict() | {"out": None}
