"""The command line: real subprocesses, every bad value or setting one line with exit code 2, help
that gives each flag a line in its group, real output."""

import subprocess
import sys

import pytest

from cnnlab.cli import main

from .helpers import captured_error_line as _one_error_line
from .helpers import run_cnnlab as _cli


def cnnlab(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnlab", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_version():
    result = cnnlab("--version")
    assert result.returncode == 0 and result.stdout.startswith("cnnlab ")


ERRORS = [
    (["trian"], "unknown command 'trian' (did you mean 'train'?)"),
    (["train", "--epoch", "3"], "unrecognized arguments: --epoch 3 (did you mean '--epochs'?)"),
    (["train", "--data", "fashion"], "unknown dataset 'fashion' (did you mean 'fashion-mnist'?)"),
    (["train", "--data", "digits", "--model", "lenet"], "unknown model 'lenet'"),
    (["train", "--data", "digits", "--optimizer", "adamm", "--epochs", "1"],
     "unknown optimizer 'adamm' (did you mean 'adam'?)"),
    (["train", "--data", "no/such/folder"], "no such folder or CSV file"),
    (["train", "--data", "digits", "--epochs", "x"], "invalid int value: 'x'"),
    (["train", "--resume", "no-such-run"], "config file no-such-run/config.yaml does not exist"),
    (["summary", "conv(8) maxpol(2) flatten dense"], "did you mean 'maxpool'?"),
    (["summary", "simple", "--input", "28x28"], "--input must look like 1x28x28"),
    (["summary", "conv(8) maxpool(2) maxpool(2) maxpool(2) maxpool(2) maxpool(2) flatten dense"],
     "layer 6 'maxpool(2)': cannot pool a 1x1 map"),
]


@pytest.mark.parametrize(("args", "message"), ERRORS)
def test_user_errors_are_one_line_with_exit_code_2(args, message, tmp_path):
    result = cnnlab(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in result.stderr


def test_summary_prints_flops_and_sharing():
    result = cnnlab("summary", "simple", "--input", "1x28x28")
    assert result.returncode == 0
    assert "8.48M FLOPs" in result.stdout
    assert "parameter sharing" in result.stdout and "receptive" in result.stdout


def test_summary_of_a_run_folder(digits_run):
    result = cnnlab("summary", str(digits_run.path))
    assert result.returncode == 0 and "on 1x8x8 input, 10 classes" in result.stdout


def test_listings():
    assert "resnet-small" in cnnlab("models").stdout
    datasets = cnnlab("datasets").stdout
    assert "fashion-mnist" in datasets and "digits" in datasets
    assert "maxpool" in cnnlab("layers").stdout


def test_train_in_a_pipe_prints_one_line_per_epoch(tmp_path):
    result = cnnlab("train", "--data", "digits", "--epochs", "2", "--out", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    epoch_lines = [line for line in result.stderr.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2
    assert "test accuracy" in result.stdout and str(tmp_path / "r") in result.stdout


def test_quiet_prints_nothing(tmp_path):
    result = cnnlab("train", "--data", "digits", "--epochs", "1", "--quiet", "--out",
                    str(tmp_path / "q"))
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""


def test_import_and_version_load_no_heavy_library():
    code = ("import sys, contextlib, io\n"
            "import cnnlab\n"
            "from cnnlab.cli import main\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['--version'])\n"
            "print(sorted(m for m in ('torch', 'timm', 'captum', 'matplotlib', 'sklearn')"
            " if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(("verb", "extra", "written"), [
    ("evaluate", ["--max-shift", "1"], "evaluate/metrics.json"),
    ("attack", ["--eps", "0,0.1", "--limit", "32"], "attack/metrics.json"),
    ("explain", ["--method", "filters"], "explain/filters.png"),
])
def test_quiet_run_verbs_print_nothing_and_still_write(digits_run, verb, extra, written):
    target = digits_run.path / written
    target.unlink(missing_ok=True)
    result = cnnlab(verb, str(digits_run.path), *extra, "--quiet")
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""
    assert target.is_file()


BAD_SETTINGS = [
    (["train", "--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["train", "--epochs", "-1"], "--epochs must be at least 1"),
    (["train", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["train", "--lr", "-1"], "--lr must be a number >= 0 and <= 1e+30"),
    (["train", "--lr", "nan"], "--lr must be a number >= 0 and <= 1e+30, got nan"),
    (["train", "--momentum", "5"], "--momentum must be a number >= 0 and < 1"),
    (["train", "--weight-decay", "-1"], "--weight-decay must be at least 0"),
    (["train", "--label-smoothing", "2"], "--label-smoothing must be a number >= 0 and < 1"),
    (["train", "--warmup", "2"], "--warmup must be a number >= 0 and <= 1"),
    (["train", "--crop-padding", "-1"], "--crop-padding must be at least 0"),
    (["train", "--erasing", "5"], "--erasing must be a number >= 0 and <= 1"),
    (["train", "--rotation", "nan"], "--rotation must be a number >= 0 and <= 180"),
    (["train", "--patience", "-1"], "--patience must be at least 1"),
    (["train", "--threads", "-1"], "--threads must be a number >= 1 and <= 1024"),
    (["train", "--image-size", "100000"], "--image-size must be a number >= 1 and <= 4096"),
    (["train", "--interpolation", "xyz"], "unknown interpolation 'xyz'"),
    (["evaluate", "RUN", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["evaluate", "RUN", "--max-shift", "1000"], "--max-shift must be a number >= 0 and <= 16"),
    (["attack", "RUN", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["predict", "RUN", "x.png", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["predict", "RUN", "x.png", "--topk", "-1"], "--topk must be at least 1"),
    (["explain", "RUN", "--method", "embedding", "--limit", "0"], "--limit must be at least 1"),
    (["export", "RUN", "--calibration", "0"], "--calibration must be at least 1"),
    (["serve", "RUN", "--port", "70000"], "--port must be a number >= 1 and <= 65535"),
]


@pytest.mark.parametrize(("args", "message"), BAD_SETTINGS)
def test_bad_settings_are_one_line_and_exit_2(run_copy, capsys, args, message):
    args = [str(run_copy) if a == "RUN" else a for a in args]
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_names_longer_than_a_path_may_be_are_not_a_crash(digits_run, capsys):
    spec = " ".join(["conv(4, k=1) relu"] * 20) + " flatten dense"  # well over 255 characters
    assert len(spec) > 300
    assert main(["summary", spec, "--input", "1x8x8"]) == 0
    assert main(["predict", str(digits_run.path), "x" * 300 + ".png"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "no such file or folder" in err


def test_summary_classes_and_predict_output_folder(digits_run, tmp_path, capsys):
    assert main(["summary", "simple", "--classes", "-1"]) == 2
    assert main(["predict", str(digits_run.path), str(digits_run.path / "curves.png"), "--format",
                 "csv", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--classes must be at least 2" in err and "is a folder" in err


@pytest.mark.parametrize(("args", "message"), [
    (["predict", "RUN", "x.mp4", "--fps", "0"], "--fps must be a number > 0, got 0.0"),
    (["attack", "RUN", "--step-size", "0"], "--step-size must be a number > 0"),
    (["train", "--adv-step-size", "-1"], "--adv-step-size must be a number > 0"),
    (["train", "--seed", str(2**64)], "--seed must be a whole number of at most 19 digits"),
    (["train", "--lr", "1e308"], "--lr must be a number >= 0 and <= 1e+30"),
    (["train", "--workers", "100000"], "--workers must be a number >= 0 and <= 256"),
    (["train", "--threads", "100000"], "--threads must be a number >= 1 and <= 1024"),
])
def test_settings_out_of_range_are_one_line(run_copy, capsys, args, message):
    assert main([str(run_copy) if a == "RUN" else a for a in args]) == 2
    assert message in _one_error_line(capsys)


@pytest.mark.parametrize(("args", "message"), [
    (["attack", "RUN", "--eps", "2"], "--eps 2 is above 1: with L-inf"),
    (["models", "zzz"], "no named network matches 'zzz'"),
    (["models", "timm:zzz"], "no timm model matches 'zzz'"),
    (["explain", "RUN", "--method", "saliency,salency"], "did you mean 'saliency'"),
    (["explain", "RUN", "IMAGE", "--method", "feature-maps", "--layer", "11"],
     "outputs a vector of 128, not maps"),
    (["explain", "RUN", "IMAGE", "--method", "gradcam", "--layer", "network.head.2"],
     "outputs a vector of 128, not maps"),
    (["train", "--resume", "RUN", "--epochs", "3"], "--epochs must be more than that"),
    (["train", "--resume", "RUN", "--lr", "0.1"], "only --epochs may change"),
])
def test_bad_values_are_one_line_and_exit_2(run_copy, capsys, args, message):
    args = [str(run_copy) if a == "RUN" else str(run_copy / "curves.png") if a == "IMAGE" else a
            for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_train_help_groups_its_flags_and_gives_each_a_line():
    out = _cli("train", "--help").stdout
    headings = ["data:", "model:", "optimization:", "augmentation:", "transfer learning:",
                "adversarial training:", "output and machine:"]
    positions = [out.index(f"\n{heading}\n") for heading in headings]
    assert positions == sorted(positions)
    assert "DATA.NAME" not in out and "--epochs N" in out and "--init RUN" in out
    flags = [line.split()[0] for line in out.splitlines() if line.startswith("  --")]
    assert len(flags) > 40
    for line in out.splitlines():
        if line.startswith("  --") and len(line.split()) <= 2:  # flag alone: its help follows
            assert out.split(line, 1)[1].splitlines()[1].startswith(" " * 10), line
