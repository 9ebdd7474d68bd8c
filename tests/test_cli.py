"""The command line: real subprocesses, one-line errors with exit code 2, real output."""

import subprocess
import sys

import pytest


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
