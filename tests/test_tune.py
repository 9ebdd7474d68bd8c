"""cnnlab tune: the search grammar, tiny real studies on digits (8x8 images, 1-3 epochs, seconds a
trial), resume after Ctrl-C and after a killed worker, pruning, failed trials, best.yaml trained
again, trials trained by two processes each (torchrun, gloo on the CPU), and several workers on one
study (SQLite on one machine, a real PostgreSQL server)."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

import cnnlab
from cnnlab.base.errors import CnnlabError
from cnnlab.cli import main
from cnnlab.run.folder import read_metrics
from cnnlab.tune.processes import STOP_SECONDS, last_error
from cnnlab.tune.space import load_tune_config, parse_search
from cnnlab.tune.study import counted, counted_before

from .helpers import captured_error_line, error_line, free_port

# Every trial: digits at 8x8, one thread, no TensorBoard files; a few seconds each.
TINY = {"data": "digits", "image_size": 8, "threads": 1, "log": "none"}
# the module whose `fit` the tests replace (`cnnlab.tune` is the function, as cnnlab.train is)
tune_run = importlib.import_module("cnnlab.tune.run")
TINY_FLAGS = ["--data", "digits", "--image-size", "8", "--threads", "1", "--log", "none"]


def tiny_tune(out: Path, **options):
    return cnnlab.tune(**TINY, out=str(out), quiet=True, **options)


def test_the_grammar_reads_ranges_scales_grids_and_choices():
    space = parse_search("lr=1e-4..3e-2:log batch-size=32|64|128 label_smoothing=0..0.2 "
                         "crop_padding=0..4:step=2 flip=true|false optimizer=adamw|sgd")
    lr, batch, smoothing, padding, flip, optimizer = space.params
    assert (lr.low, lr.high, lr.log, lr.integer) == (1e-4, 3e-2, True, False)
    assert (batch.name, batch.choices) == ("batch_size", (32, 64, 128))
    assert (smoothing.low, smoothing.high, smoothing.log) == (0.0, 0.2, False)
    assert (padding.key, padding.integer, padding.step) == ("augment.crop_padding", True, 2)
    assert flip.choices == (True, False) and optimizer.choices == ("adamw", "sgd")
    # what the study records and a YAML search: mapping holds, read back to the same space
    assert parse_search(space.to_dict()) == space
    assert space.to_dict()["lr"] == "0.0001..0.03:log"


def test_a_yaml_config_carries_its_search(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("data: digits\nepochs: 2\nsearch:\n  lr: 1e-4..3e-2:log\n"
                    "  batch_size: [32, 64]\n  model: fast|lenet5\n")
    config, space = load_tune_config(path)
    assert config.data.name == "digits" and config.epochs == 2
    assert space.names() == ["lr", "batch_size", "model"]
    assert space.params[1].choices == (32, 64)
    path.write_text("data: digits\nsearch:\n  lr: [0.01]\n")
    with pytest.raises(CnnlabError, match="search: lr: give two or more choices"):
        load_tune_config(path)
    path.write_text("data: digits\nsearch:\n  model: [fast, nosuchnet]\n")
    with pytest.raises(CnnlabError, match="search: model: unknown model 'nosuchnet'"):
        load_tune_config(path)


@pytest.mark.parametrize("spec, message", [
    ("", "the search is empty"),
    ("lr", "--search part 'lr': write NAME=LOW..HIGH"),
    ("lrr=1e-4..1e-2", "'lrr' is not a setting (did you mean 'lr'?)"),
    ("out=a|b", "'out' is set by the sweep, not searched"),
    ("lr=0..1e-2:log", "a log range must start above 0"),
    ("lr=1e-2..1e-4", "low end must be below its high end"),
    ("lr=a..b", "the range's ends and step must be numbers, got 'a'"),
    ("epochs=1.5..4", "must be whole numbers"),
    ("lr=1e-4..1e-2:cubic", "after the range comes :log or :step=S"),
    ("optimizer=adam..sgd", "optimizer is not a number; give choices"),
    ("optimizer=adam|sdg", "unknown optimizer 'sdg' (did you mean 'sgd'?)"),
    # every network a choice names is looked up as train would, before the study starts
    ("model=fast|nosuchnet", "part 'model=fast|nosuchnet': unknown model 'nosuchnet'"),
    ("model=fast|timm:resnet1888", "timm has no model 'resnet1888' (did you mean 'resnet18'?)"),
    ("model=fast|conv(8,k=3)-pool(9)", "cannot read '-pool(9)' at character 12 of the layer spec"),
    ("label_smoothing=0..1.5", "--label-smoothing must be a number >= 0 and < 1"),
    ("batch_size=64", "a single value is a flag: --batch-size"),
    ("lr=1e-4..1e-2 lr=1e-3..1e-1", "lr is searched twice"),
])
def test_a_bad_search_is_one_line_naming_the_part(spec, message, capsys, tmp_path):
    assert main(["tune", *TINY_FLAGS, "--out", str(tmp_path / "s"), "--search", spec]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and len(error.splitlines()) == 1
    assert message in error
    assert not (tmp_path / "s").exists()  # refused before anything is made


def test_other_bad_tune_settings_are_one_line(capsys, tmp_path):
    for flags, message in (([], "say what to search"),
                           (["--search", "lr=1e-3..1e-2", "--budget", "soon"], "--budget must be"),
                           (["--search", "lr=1e-3..1e-2", "--pruner", "medain"],
                            "unknown pruner 'medain' (did you mean 'median'?)"),
                           (["--search", "lr=1e-3..1e-2", "--storage", "nosuchdb://x"],
                            "cannot open the study storage nosuchdb://x")):
        assert main(["tune", *TINY_FLAGS, "--out", str(tmp_path / "s"), *flags]) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and message in error, error


def test_a_study_of_run_folders_then_more_trials_added(tmp_path, capsys):
    out = tmp_path / "sweep"
    flags = ["tune", *TINY_FLAGS, "--epochs", "2", "--out", str(out), "--sampler-seed", "0",
             "--search", "lr=1e-3..3e-2:log batch_size=32|64 label_smoothing=0..0.2"]
    assert main([*flags, "--trials", "2"]) == 0
    printed = capsys.readouterr()
    assert "study 'sweep': 2 of 2 trials" in printed.out and "best: trial" in printed.out
    assert "trial 1 complete: val_acc" in printed.err
    for trial in ("trial-000", "trial-001"):  # every trial a whole run folder
        folder = out / trial
        assert {"config.yaml", "metrics.csv", "model.safetensors", "model.json", "last.ckpt",
                "results.json"} <= {p.name for p in folder.iterdir()}
        assert yaml.safe_load((folder / "results.json").read_text())["status"] == "finished"
    assert {"study.db", "trials.csv", "best.yaml", "history.png", "slices.png", "importance.png",
            "intermediate.png"} <= {p.name for p in out.iterdir()}

    # --trials is the study's total: a larger number adds only the trials missing
    result = tiny_tune(out, epochs=2, sampler_seed=0, trials=3,
                       search="lr=1e-3..3e-2:log batch_size=32|64 label_smoothing=0..0.2")
    assert (result.ran, result.counted) == (1, 3)
    assert [r.number for r in result.trials] == [0, 1, 2]
    # the same --sampler-seed on a study taken up again proposes new settings, not the first ones
    first, second, added = (r.params for r in result.trials)
    assert added != first and added != second
    assert {r.state for r in result.trials} == {"complete"}
    assert set(result.importances) == {"lr", "batch_size", "label_smoothing"}
    again = tiny_tune(out, epochs=2, trials=3,
                      search="lr=1e-3..3e-2:log batch_size=32|64 label_smoothing=0..0.2")
    assert again.ran == 0 and again.best == result.best

    # `cnnlab runs` lists the trials of the sweep
    assert main(["runs", str(out)]) == 0
    assert "trial-002" in capsys.readouterr().out

    # another space on the same study is refused, naming what differs
    with pytest.raises(CnnlabError, match="was started with another search space .* and holds "
                                          "trials of them; give another --study or --out"):
        tiny_tune(out, epochs=2, trials=4, search="lr=1e-3..3e-2:log")


def test_best_yaml_trains_again_with_cnnlab_train(tmp_path):
    out = tmp_path / "sweep"
    result = tiny_tune(out, epochs=1, trials=2, sampler_seed=1, search="lr=1e-3..3e-2:log")
    best = out / "best.yaml"
    assert main(["train", "--config", str(best), "--out", str(tmp_path / "again"), "--quiet"]) == 0
    trained = yaml.safe_load((tmp_path / "again" / "config.yaml").read_text())
    assert trained["lr"] == pytest.approx(result.best.params["lr"])
    assert trained["data"]["image_size"] == 8 and trained["epochs"] == 1
    # the same settings train to the same validation accuracy (CPU training is deterministic)
    again = yaml.safe_load((tmp_path / "again" / "results.json").read_text())
    assert again["best_val_accuracy"] == pytest.approx(result.best.value)


def test_ctrl_c_keeps_the_study_and_the_same_command_makes_up_the_trial(tmp_path, monkeypatch):
    real_fit, calls = tune_run.fit, []

    def interrupted_second(config, **kwargs):
        calls.append(config.out)
        if len(calls) == 2:
            raise KeyboardInterrupt("training stopped")
        return real_fit(config, **kwargs)

    monkeypatch.setattr(tune_run, "fit", interrupted_second)
    out = tmp_path / "sweep"
    with pytest.raises(KeyboardInterrupt, match="keeps 1 of its 2 trials"):
        tiny_tune(out, epochs=1, trials=2, search="lr=1e-3..3e-2:log")
    monkeypatch.setattr(tune_run, "fit", real_fit)
    result = tiny_tune(out, epochs=1, trials=2, search="lr=1e-3..3e-2:log")
    states = {r.number: r.state for r in result.trials}
    assert states == {0: "complete", 1: "interrupted", 2: "complete"}
    assert result.ran == 1 and result.counted == 2


def test_a_trial_left_running_by_a_killed_worker_is_made_up(tmp_path):
    out = tmp_path / "sweep"
    tiny_tune(out, epochs=1, trials=1, search="lr=1e-3..3e-2:log")
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{out / 'study.db'}")
    orphan = study.ask()  # as a worker SIGKILLed mid-trial leaves it: running, its process gone
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    orphan.set_user_attr("worker", f"{socket.gethostname()}:{dead}")
    result = tiny_tune(out, epochs=1, trials=2, search="lr=1e-3..3e-2:log")
    assert [(r.number, r.state) for r in result.trials] == [(0, "complete"), (1, "interrupted"),
                                                           (2, "complete")]


# `cnnlab tune ARGS` in a process of its own whose trial trains for real and is then killed with
# SIGKILL: after results.json is written, before the study is told the trial's value.
KILLED_AFTER_TRAINING = """
import importlib, os, signal, sys
tune_run = importlib.import_module("cnnlab.tune.run")
real_fit = tune_run.fit

def fit_then_killed(config, **options):
    real_fit(config, **options)
    os.kill(os.getpid(), signal.SIGKILL)

tune_run.fit = fit_then_killed
from cnnlab.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("left", ["running", "failed by the heartbeat"])
def test_a_trial_killed_after_its_run_folder_finished_counts_with_its_value(tmp_path, left):
    out = tmp_path / "sweep"
    flags = [*TINY_FLAGS, "--epochs", "1", "--search", "lr=1e-3..3e-2:log", "--trials", "1",
             "--out", str(out), "--quiet"]
    killed = subprocess.run([sys.executable, "-c", KILLED_AFTER_TRAINING, "tune", *flags],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    folder = out / "trial-000"
    assert json.loads((folder / "results.json").read_text())["status"] == "finished"
    storage = f"sqlite:///{out / 'study.db'}"
    if left != "running":  # as Optuna's heartbeat fails a silent worker's trial, or a resume did
        optuna.load_study(study_name="sweep", storage=storage).tell(0, state=TrialState.FAIL)
    kept = max(row.val_acc for row in read_metrics(folder))

    result = tiny_tune(out, epochs=1, trials=1, search="lr=1e-3..3e-2:log")
    assert result.ran == 0 and result.counted == 1  # nothing made up: the trial is there
    assert result.best.value == pytest.approx(kept) and result.best.run == str(folder)
    if left == "running":
        assert [(r.number, r.state) for r in result.trials] == [(0, "complete")]
    else:  # a finished trial cannot change: the folder's result is added as a trial of its own
        assert [(r.number, r.state) for r in result.trials] == [(0, "interrupted"), (1, "complete")]
        assert result.trials[0].reason == "its run folder's result is recorded as trial 1"
    assert tiny_tune(out, epochs=1, trials=1, search="lr=1e-3..3e-2:log").trials == result.trials
    assert f"in trial {result.best.number} ({folder})" in (out / "best.yaml").read_text()


def test_a_corrected_search_starts_over_a_study_that_has_no_trial_that_trained(tmp_path, capsys):
    out = tmp_path / "sweep"
    _queued(out, {"model": "lenet5"})  # lenet5's 5x5 kernels do not fit 8x8 digits: train refuses
    with pytest.raises(CnnlabError, match="a 5x5 kernel does not fit the 4x4 input"):
        tiny_tune(out, epochs=1, trials=1, search="model=lenet5|simple")
    result = cnnlab.tune(**TINY, out=str(out), epochs=1, trials=1, search="model=simple|fast")
    assert "had another search space and no trial that trained: started over" in \
        capsys.readouterr().err
    assert [(r.number, r.state) for r in result.trials] == [(0, "complete")]
    assert result.space.to_dict() == {"model": "simple|fast"}


def test_a_journal_file_in_a_folder_that_does_not_exist_is_one_line(tmp_path, capsys):
    journal = tmp_path / "no" / "such" / "folder" / "study.log"
    assert main(["tune", *TINY_FLAGS, "--search", "lr=1e-3..3e-2:log", "--out",
                 str(tmp_path / "sweep"), "--storage", f"journal:{journal}"]) == 2
    line = captured_error_line(capsys)
    assert f"the folder {journal.parent} does not exist; make it first" in line
    assert not (tmp_path / "no").exists()  # no folder made where a typo pointed
    result = tiny_tune(tmp_path / "sweep", epochs=1, trials=1, search="lr=1e-3..3e-2:log",
                       storage=f"journal:{tmp_path / 'study.log'}")
    assert result.counted == 1 and (tmp_path / "study.log").is_file()


# `cnnlab tune DISK ARGS` in a process of its own, which fills DISK after each trial's epoch 1.
FILLS_THE_DISK = """
import importlib, sys
tune_run = importlib.import_module("cnnlab.tune.run")
real_fit, disk = tune_run.fit, sys.argv[1]

def fill():
    with open(f"{disk}/filler", "wb") as handle:
        try:
            while True:
                handle.write(bytes(1 << 16))
                handle.flush()
        except OSError:
            pass

def fit_filling(config, **options):
    report = options["on_epoch_end"]
    def then_fill(model, row):
        report(model, row)
        if row.epoch == 1:
            fill()
    return real_fit(config, **{**options, "on_epoch_end": then_fill})

tune_run.fit = fit_filling
from cnnlab.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_a_disk_that_fills_during_a_trial_says_to_run_tune_again(own_disk):
    out = own_disk / "sweep"  # the study's database too, on the disk that fills
    full = subprocess.run([sys.executable, "-c", FILLS_THE_DISK, str(own_disk), "tune", *TINY_FLAGS,
                           "--epochs", "2", "--search", "lr=1e-3..3e-2:log", "--trials", "1",
                           "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert full.returncode == 2
    line = error_line(full.stderr)
    assert "No space left on device; trial 0 stopped" in line
    assert "make room, then run the same cnnlab tune command again" in line
    assert "cnnlab train --resume" not in line
    (own_disk / "filler").unlink()
    result = tiny_tune(out, epochs=2, trials=1, search="lr=1e-3..3e-2:log")
    assert [(r.number, r.state) for r in result.trials] == [(0, "interrupted"), (1, "complete")]


def test_the_median_pruner_stops_a_bad_trial_and_its_run_folder_says_so(tmp_path):
    out = tmp_path / "sweep"
    out.mkdir()
    # Two trials queued on the study first, as Optuna users do: a sound rate, then lr=0, which
    # leaves the network as initialized, far below the first trial's accuracy after epoch 1.
    study = optuna.create_study(study_name="sweep", direction="maximize",
                                storage=f"sqlite:///{out / 'study.db'}")
    study.enqueue_trial({"lr": 0.01})
    study.enqueue_trial({"lr": 0.0})
    result = tiny_tune(out, epochs=3, trials=2, search="lr=0..0.02", pruner="median",
                       startup_trials=1)
    good, bad = result.trials
    assert (good.state, good.epochs) == ("complete", 3)
    assert (bad.state, bad.epochs, bad.reason) == ("pruned", 1, "after epoch 1")
    assert bad.value < good.value
    results = yaml.safe_load((out / "trial-001" / "results.json").read_text())
    assert results["status"] == "pruned" and results["epochs"] == 1
    assert (out / "trial-001" / "model.safetensors").is_file()  # the run folder stays whole
    assert result.best.number == 0


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    real_fit, calls = tune_run.fit, []

    def out_of_memory_first(config, **kwargs):
        calls.append(config.out)
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")
        return real_fit(config, **kwargs)

    monkeypatch.setattr(tune_run, "fit", out_of_memory_first)
    result = tiny_tune(tmp_path / "sweep", epochs=1, trials=2, search="lr=1e-3..3e-2:log")
    failed, complete = result.trials
    assert failed.state == "failed"
    assert failed.reason == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert complete.state == "complete" and result.counted == 2  # a failed trial counts


# Each trial trained by two processes (torchrun, gloo on the CPU), without the calibration that
# `cnnlab train` adds after training: a trial's score does not need it.
ON_TWO = {"trial_processes": 2, "calibrate": False}


def _queued(out: Path, *params: dict) -> None:
    """The study made first with these settings queued, so that the trials run in this order."""
    out.mkdir()
    study = optuna.create_study(study_name=out.name, direction="maximize",
                                storage=f"sqlite:///{out / 'study.db'}")
    for values in params:
        study.enqueue_trial(values)


@pytest.mark.slow
def test_each_trial_trained_by_two_processes_completes_or_is_pruned(tmp_path):
    out = tmp_path / "sweep"
    # Two sound rates finish (the pruner waits for two), then lr=0, far below their median after
    # epoch 1, is stopped there.
    _queued(out, {"lr": 0.01}, {"lr": 0.02}, {"lr": 0.0})
    result = tiny_tune(out, epochs=2, trials=3, search="lr=0..0.02", startup_trials=2, **ON_TWO)
    assert [(r.state, r.epochs, r.reason) for r in result.trials] == \
        [("complete", 2, ""), ("complete", 2, ""), ("pruned", 1, "after epoch 1")]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == \
        ["trial-000", "trial-001", "trial-002"]  # the second process made no folder
    for record in result.trials:
        folder = Path(record.run)
        assert {"config.yaml", "metrics.csv", "model.safetensors", "model.json", "last.ckpt",
                "results.json"} <= {p.name for p in folder.iterdir()}  # pruned: its epoch whole
        assert not list(folder.glob(".*"))  # no lock, no half-written file left
        # launched from its own YAML, and trained by two processes together
        assert yaml.safe_load(folder.with_suffix(".yaml").read_text())["lr"] == record.params["lr"]
        assert "on 2 processes (gloo)" in folder.with_suffix(".log").read_text()
    complete, _, pruned = result.trials
    rows = read_metrics(complete.run)
    assert complete.value == max(row.val_acc for row in rows)  # the best epoch's, from the folder
    stopped = yaml.safe_load((Path(pruned.run) / "results.json").read_text())
    assert stopped["status"] == "pruned" and stopped["epochs"] >= 1
    assert pruned.value < complete.value
    assert {"trials.csv", "best.yaml"} <= set(result.files)
    assert result.best.number in (0, 1)


@pytest.mark.slow
def test_on_two_processes_a_diverging_trial_fails_and_a_refused_setting_stops_the_sweep(tmp_path):
    out = tmp_path / "sweep"
    # lr=50 with plain SGD diverges in its first epoch; a batch of 33 does not split over two
    # processes, which train refuses as it would on any trial: the sweep stops with its line.
    _queued(out, {"lr": 50, "batch_size": 32}, {"lr": 0.01, "batch_size": 33})
    with pytest.raises(CnnlabError, match="^--batch-size 33 does not split evenly over 2 proc"):
        tiny_tune(out, epochs=1, trials=2, search="lr=0.01|50 batch_size=32|33", model="simple",
                  optimizer="sgd", ema=0, pruner="none", **ON_TWO)
    diverged, refused = optuna.load_study(study_name="sweep",
                                          storage=f"sqlite:///{out / 'study.db'}").trials
    assert diverged.state == refused.state == TrialState.FAIL
    assert diverged.user_attrs["failure"] == "diverged: the loss or the weights stopped being finite"
    assert json.loads((out / "trial-000" / "results.json").read_text())["status"] == "diverged"
    assert refused.user_attrs["interrupted"].startswith("--batch-size 33 does not split")


def test_under_torchrun_tune_says_how_to_give_each_trial_several_processes(tmp_path, monkeypatch):
    for name, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)  # as torchrun sets them
    with pytest.raises(CnnlabError, match="without torchrun, with --trial-processes N"):
        tiny_tune(tmp_path / "sweep", epochs=1, trials=1, search="lr=1e-3..3e-2:log")
    assert not (tmp_path / "sweep").exists()


def _descendants(pid: int) -> list[int]:
    children = [int(child) for task in Path(f"/proc/{pid}/task").glob("*/children")
                for child in task.read_text().split()]
    return children + [grandchild for child in children for grandchild in _descendants(child)]


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has ended; only its exit status waits


def _interruptible() -> None:
    """SIGINT as a terminal gives it: a suite started in the background (`pytest &`, nohup)
    passes SIGINT on ignored, and Python then installs no KeyboardInterrupt at all."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads processes from /proc")
def test_ctrl_c_of_the_sweep_stops_the_processes_training_its_trial(tmp_path):
    out = tmp_path / "sweep"
    # epochs enough that the trial never ends before the Ctrl-C, however fast its epochs run
    tune = subprocess.Popen([sys.executable, "-m", "cnnlab", "tune", *TINY_FLAGS,
                             "--epochs", "10000", "--search", "lr=1e-3..3e-2:log", "--trials", "1",
                             "--out", str(out), "--trial-processes", "2", "--no-calibrate"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_interruptible)
    metrics, deadline = out / "trial-000" / "metrics.csv", time.monotonic() + 300
    while not metrics.is_file() and tune.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metrics.is_file(), tune.communicate()[1]  # training under way: an epoch is done
    training = _descendants(tune.pid)  # torchrun and its two processes
    assert len(training) >= 3
    tune.send_signal(signal.SIGINT)
    try:  # the sweep waits up to STOP_SECONDS for torchrun, then kills; then it sums up
        _, err = tune.communicate(timeout=STOP_SECONDS + 120)
    except subprocess.TimeoutExpired:
        tune.kill()
        states = {pid: _running(pid) for pid in training}
        for pid in training:  # in sessions of their own: nothing else would stop them
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        log = out / "trial-000.log"
        pytest.fail(f"the sweep did not end; still running: {states}; its stderr: "
                    f"{tune.communicate()[1]}; the trial's log: "
                    f"{log.read_text()[-3000:] if log.is_file() else 'none'}")
    assert tune.returncode == 130 and "keeps 0 of its 1 trials" in err
    assert not [pid for pid in training if _running(pid)]
    assert not (out / "trial-000" / ".lock").exists()  # train let go of its folder as on Ctrl-C
    assert "continue with: cnnlab train --resume" in (out / "trial-000.log").read_text()


def test_the_reason_of_a_crashed_trial_is_its_processes_error_not_torchruns_report():
    report = ("E0101 torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: 1)\n"
              "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
              "  error_file: <N/A>\n"
              "  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic\n")
    crash = ("Traceback (most recent call last):\n  File \"loop.py\", line 9, in step\n"
             "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n")
    assert last_error(crash + crash + report) == \
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert last_error("error: --batch-size 33 does not split evenly\n" + report) == \
        "error: --batch-size 33 does not split evenly"
    killed = report + "  traceback : Signal 9 (SIGKILL) received by PID 4242\n"
    assert last_error(killed) == "Signal 9 (SIGKILL) received by PID 4242"
    assert last_error(report) == ""


def _worker(out: Path, storage: str | None = None, trials: int = 4) -> subprocess.Popen:
    command = [sys.executable, "-m", "cnnlab", "tune", *TINY_FLAGS, "--epochs", "1", "--pruner",
               "none", "--search", "lr=1e-3..3e-2:log batch_size=32|64", "--trials", str(trials),
               "--out", str(out), "--quiet"]
    if storage:
        command += ["--storage", storage, "--study", "shared"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _check_shared(study: optuna.Study, trials: int, folders: list[Path]) -> None:
    # a worker that asked for a trial once the others had the last one gives its own up
    kept = [t for t in study.trials if not t.user_attrs.get("surplus")]
    finished = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(kept) == trials and len(finished) == trials
    assert sorted(t.number for t in kept) == list(range(trials))  # none repeats
    assert all(t.number >= trials for t in study.trials if t.user_attrs.get("surplus"))
    runs = [t.user_attrs["run"] for t in finished]
    assert len(set(runs)) == trials
    assert sorted(p.name for f in folders for p in f.glob("trial-*")) == \
        [f"trial-{n:03d}" for n in range(trials)]
    workers = {t.user_attrs["worker"] for t in finished}
    assert len(workers) == 2  # both took a share


def test_two_workers_asking_at_once_for_the_last_trial_give_up_only_the_later_one():
    study = optuna.create_study()
    for value in (0.1, 0.2, 0.3):
        study.add_trial(optuna.trial.create_trial(value=value))
    first, second = study.ask(), study.ask()  # both running: each sees the other's
    assert counted(study, besides=first.number) == counted(study, besides=second.number) == 4
    assert counted_before(study, first.number) == 3  # under the 4 trials: it runs
    assert counted_before(study, second.number) == 4  # the study has its 4: given up


def _wait(*workers: subprocess.Popen) -> None:
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study_on_one_machine(tmp_path):
    out = tmp_path / "sweep"
    first, second = _worker(out), _worker(out)
    _wait(first, second)
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{out / 'study.db'}")
    _check_shared(study, 4, [out])


def _postgres_binaries() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


@pytest.fixture
def postgres():
    """A PostgreSQL server of Debian's package in a temporary folder, for this test alone. The
    server refuses to run as root: as root it runs as the `postgres` user the package makes."""
    binaries = _postgres_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed (Debian: apt install postgresql)")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="cnnlab-pg-"))
    if os.geteuid() == 0:
        import pwd

        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and there is no postgres user to run the server as")
        os.chown(folder, account.pw_uid, account.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()

    def run(*command: str) -> None:
        done = subprocess.run([*as_user, *command], capture_output=True, text=True, cwd=folder)
        if done.returncode != 0:
            log = (folder / "log").read_text() if (folder / "log").is_file() else ""
            pytest.fail(f"{Path(command[0]).name} failed: {done.stderr or done.stdout} {log}"[-2000:])

    run(str(binaries / "initdb"), "-D", str(data), "--auth=trust", "-U", "cnnlab")
    run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start")
    try:
        yield f"postgresql+psycopg2://cnnlab@127.0.0.1:{port}/postgres"
    finally:
        run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_on_other_folders_share_a_postgresql_study(postgres, tmp_path):
    # As two machines would: each its own sweep folder, the study in the server.
    first, second = _worker(tmp_path / "a", postgres), _worker(tmp_path / "b", postgres)
    _wait(first, second)
    study = optuna.load_study(study_name="shared", storage=postgres)
    _check_shared(study, 4, [tmp_path / "a", tmp_path / "b"])
    # the best settings are the same seen from either side
    seen = [tiny_tune(tmp_path / side, storage=postgres, study="shared", epochs=1, pruner="none",
                      trials=4, search="lr=1e-3..3e-2:log batch_size=32|64") for side in "ab"]
    assert seen[0].ran == seen[1].ran == 0
    assert seen[0].best == seen[1].best
    best = [yaml.safe_load((tmp_path / side / "best.yaml").read_text()) for side in "ab"]
    assert best[0] == best[1]


def test_a_trial_is_never_pruned_after_its_last_epoch(tmp_path):
    """Its work is done by then: the pruner may stop it early, not throw its result away."""
    from cnnlab.config import TrainConfig
    from cnnlab.run.results import EpochRow
    from cnnlab.train.loop import TrainingStopped
    from cnnlab.tune.run import Objective
    from cnnlab.tune.settings import TuneSettings
    from cnnlab.tune.space import parse_search

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1))
    trial = study.ask()
    objective = Objective(parse_search("lr=1e-3..1e-2:log"), TrainConfig(), TuneSettings(),
                          tmp_path, say=lambda line: None)
    report = objective._reporter(trial, last=3)
    row = {"train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0, "val_acc": 0.5, "lr": 1e-3,
           "seconds": 1.0}
    with pytest.raises(TrainingStopped):  # below the threshold after epoch 2 of 3: pruned
        report(EpochRow(epoch=2, **row))
    report(EpochRow(epoch=3, **row))  # below it after the last epoch: kept
