"""`cnnlab runs` and `cnnlab compare`: run folders written as training writes them, real tiny runs,
McNemar's exact test against statsmodels and scipy, one-line errors."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scipy.stats import binomtest
from statsmodels.stats.contingency_tables import mcnemar

import cnnlab
from cnnlab.base.fileio import atomic_write_json, atomic_write_text
from cnnlab.config import TrainConfig, apply_overrides
from cnnlab.evaluate.predictions import PredictionRow, read_predictions
from cnnlab.experiments import records
from cnnlab.experiments.compare import SplitScores, other_test_set, pair
from cnnlab.experiments.mcnemar import mcnemar_exact
from cnnlab.experiments.records import read_run
from cnnlab.experiments.table import differing_settings
from cnnlab.run import folder
from cnnlab.run.results import EpochRow, TrainingResults

from .helpers import error_line


def cnnlab_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnlab", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def fake_run(path: Path, epochs_done: int, status: str | None = "finished",
             **overrides) -> Path:
    """A run folder as training leaves it: config.yaml at the start, metrics.csv after each epoch,
    results.json at the end (none when `status` is None: a killed run)."""
    config = apply_overrides(TrainConfig(), {"data.name": "digits", "model": "fast", "epochs": 10,
                                             "out": str(path), **overrides})
    path.mkdir(parents=True)
    atomic_write_text(path / folder.CONFIG, config.to_yaml())
    history = [EpochRow.measured(epoch, (1.0 / epoch, 0.5 + epoch / 40), (1.2 / epoch, 0.5 + epoch / 50),
                                 1e-3, 0.5) for epoch in range(1, epochs_done + 1)]
    folder.write_metrics(path, history)
    if status is not None:
        best = max(history, key=lambda row: row.val_acc) if history else None
        results = TrainingResults(status=status, epochs=epochs_done,
                                  best_epoch=best.epoch if best else 0,
                                  best_val_accuracy=best.val_acc if best else None,
                                  test_accuracy=best.val_acc - 0.01 if best else None,
                                  seconds=0.5 * epochs_done)
        atomic_write_json(path / folder.RESULTS, results.to_dict())
    return path


def test_file_names_match_the_run_folder():
    # records repeats run/folder's names so that listing runs never loads torch
    assert (records.CONFIG, records.METRICS, records.RESULTS, records.WEIGHTS, records.META,
            records.CHECKPOINT) == (folder.CONFIG, folder.METRICS, folder.RESULTS, folder.WEIGHTS,
                                    folder.META, folder.CHECKPOINT)


# McNemar's exact test ------------------------------------------------------------------------

@pytest.mark.parametrize(("only_first", "only_second"),
                         [(0, 0), (0, 1), (1, 0), (3, 3), (10, 83), (7, 2), (0, 25), (612, 700),
                          (1500, 1400)])
def test_mcnemar_equals_statsmodels_and_scipy(only_first, only_second):
    table = [[50, only_first], [only_second, 9]]
    expected = mcnemar(table, exact=True).pvalue
    ours = mcnemar_exact(only_first, only_second)
    assert ours == pytest.approx(expected, rel=1e-9, abs=1e-300)
    if only_first + only_second:
        assert ours == pytest.approx(binomtest(only_first, only_first + only_second).pvalue,
                                     rel=1e-9, abs=1e-300)


def _rows(truth: str, guesses: str) -> list[PredictionRow]:
    return [PredictionRow(i, "", t, g, 0.9, 0.1) for i, (t, g) in enumerate(zip(truth, guesses, strict=True))]


def test_pair_counts_the_two_by_two_table():
    truth = "aabbccddee"
    first, second = _rows(truth, "aabbccddxx"), _rows(truth, "axbbccdyee")
    test = pair("A", "B", first, second)
    assert (test.both_right, test.only_first, test.only_second, test.both_wrong) == (6, 2, 2, 0)
    assert test.disagree == 4 and test.images == 10 and test.p_value == 1.0


def test_other_test_set_says_why():
    scores = SplitScores("digits", "test", 1.0, {}, tuple(_rows("abc", "abc")))
    assert other_test_set(scores, scores) is None
    shorter = SplitScores("digits", "test", 1.0, {}, tuple(_rows("ab", "ab")))
    assert "3 against 2 images" in other_test_set(scores, shorter)
    relabelled = SplitScores("digits", "test", 1.0, {}, tuple(_rows("abd", "abc")))
    assert "labels differ" in other_test_set(scores, relabelled)
    other = SplitScores("fashion-mnist", "test", 1.0, {}, tuple(_rows("abc", "abc")))
    assert "digits test against fashion-mnist test" in other_test_set(scores, other)


# cnnlab runs ---------------------------------------------------------------------------------

def test_only_settings_that_differ(tmp_path):
    a = read_run(fake_run(tmp_path / "a", 2, lr=0.01))
    b = read_run(fake_run(tmp_path / "b", 2, lr=0.02, seed=3))
    c = read_run(fake_run(tmp_path / "c", 2, lr=0.01, **{"data.image_size": 8}))
    unknown = read_run(tmp_path / "nothing")  # no config.yaml: unknown, not different
    # out differs in every run and is never a difference that matters
    assert differing_settings([a, b, c, unknown]) == ("data.image_size", "lr", "seed")
    assert differing_settings([a, a]) == ()


@pytest.fixture(scope="module")
def many_runs(tmp_path_factory) -> Path:
    """200 run folders: a sweep of lr and epochs, killed and running ones, trials a folder deeper."""
    root = tmp_path_factory.mktemp("many") / "runs"
    for i in range(190):
        fake_run(root / f"run-{i:03d}", epochs_done=1 + i % 3, lr=[1e-3, 3e-3, 1e-2][i % 3],
                 epochs=1 + i % 3)
    for i in range(6):
        fake_run(root / "sweep" / f"trial-{i}", epochs_done=2, lr=0.05, epochs=2)
    fake_run(root / "killed", epochs_done=3, status=None)
    fake_run(root / "diverged", epochs_done=0, status="diverged")
    fake_run(root / "running", epochs_done=1, status=None)
    (root / "running" / records.LOCK).write_text(str(os.getpid()))  # this process is alive
    (root / "started").mkdir()  # killed in its first epoch: its lock stayed, naming no live process
    atomic_write_text(root / "started" / folder.CONFIG, TrainConfig().to_yaml())
    (root / "started" / records.LOCK).write_text("")
    (root / "not-a-run" / "images").mkdir(parents=True)
    (root / "empty").mkdir()  # a config.yaml alone (an empty one here) is no run
    (root / "empty" / folder.CONFIG).write_text("")
    (root / "other-project").mkdir()
    atomic_write_text(root / "other-project" / folder.CONFIG, TrainConfig().to_yaml())
    return root


def test_runs_lists_every_run_with_its_status(many_runs):
    result = cnnlab_cli("runs", str(many_runs), "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert len(rows) == 200
    assert "sweep/trial-5" in rows and "not-a-run" not in rows
    assert "empty" not in rows and "other-project" not in rows
    assert result.stderr == ""
    assert rows["killed"]["status"] == "incomplete"
    assert (rows["killed"]["epochs"], rows["killed"]["planned_epochs"]) == (3, 10)
    assert rows["killed"]["test_accuracy"] is None
    assert rows["killed"]["best_val_accuracy"] == pytest.approx(0.56)
    assert rows["running"]["status"] == "running"
    assert rows["diverged"]["status"] == "diverged"
    assert rows["started"]["status"] == "incomplete" and rows["started"]["epochs"] == 0
    # only the settings that differ; epochs (planned) has a column of its own, out is never compared
    assert [key for key in rows["run-000"] if key in ("lr", "seed", "out")] == ["lr"]
    assert rows["run-000"]["planned_epochs"] == 1
    assert rows["run-002"]["lr"] == 0.01 and rows["run-002"]["test_accuracy"] == pytest.approx(0.55)


def test_runs_formats_and_sort(many_runs, tmp_path):
    out = tmp_path / "runs.csv"
    result = cnnlab_cli("runs", str(many_runs), "--sort", "test", "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 200
    tests = [float(row["test_accuracy"]) for row in rows if row["test_accuracy"]]
    assert tests == sorted(tests, reverse=True)  # accuracies best first
    assert all(not row["test_accuracy"] for row in rows[len(tests):])  # runs without one last
    table = cnnlab.runs(many_runs, sort="lr")
    lrs = [run.settings["lr"] for run in table.runs if run.settings.get("lr") is not None]
    assert lrs == sorted(lrs)
    shown = cnnlab_cli("runs", str(many_runs / "sweep"))
    assert shown.returncode == 0 and "6 runs under" in shown.stdout and "trial-3" in shown.stdout


def _alias_bomb(levels: int = 6) -> str:
    """YAML whose aliases stand for 6 * 9**levels strings (3 million for 6): a few hundred bytes."""
    lines = ['augment:', '  rotation:', '    - &a0 ["lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"    - &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join([*lines, f"epochs: *a{levels}", ""])


def _strict_json(text: str):
    """JSON as any reader other than Python's takes it: NaN and Infinity are not JSON."""
    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_a_run_whose_config_expands_without_bound_is_listed_as_unreadable(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs / "good", epochs_done=2)
    bomb = fake_run(runs / "bomb", epochs_done=2)
    (bomb / folder.CONFIG).write_text(_alias_bomb())
    result = cnnlab_cli("runs", str(runs), "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in _strict_json(result.stdout)}
    assert set(rows) == {"good", "bomb"}
    assert (rows["good"]["data"], rows["bomb"]["data"]) == ("digits", "?")
    assert rows["bomb"]["status"] == "finished"  # its results.json is fine
    (warning,) = result.stderr.splitlines()
    assert warning.startswith(f"warning: {bomb / folder.CONFIG} stands for more than 1,000,000")
    assert len(result.stdout) < 10_000


def test_compare_with_a_config_that_expands_without_bound_writes_a_small_file(tmp_path):
    good, bomb = fake_run(tmp_path / "good", epochs_done=2), fake_run(tmp_path / "bomb", epochs_done=1)
    (bomb / folder.CONFIG).write_text(_alias_bomb())
    comparison = cnnlab.compare(good, bomb, out=str(tmp_path / "cmp"), quiet=True)
    assert any(note.startswith(f"{bomb}: {bomb / folder.CONFIG} stands for more than")
               for note in comparison.notes)
    written = tmp_path / "cmp" / "compare.json"
    assert written.stat().st_size < 20_000 and _strict_json(written.read_text())["settings"] == {}


def _damage(run: Path, name: str, **values) -> Path:
    path = run / name
    path.write_text(json.dumps({**json.loads(path.read_text()), **values}))
    return path


def _damaged_runs(root: Path) -> dict[str, str]:
    """Run folders with numbers no run can have, and the warning each must give."""
    expected = {}
    for name, field, value, says in [
            ("negative", "test_accuracy", -0.5, "must be a number from 0 to 1, got -0.5"),
            ("above-one", "best_val_accuracy", 1.5, "must be a number from 0 to 1, got 1.5"),
            ("huge", "seconds", 1e300, "must be a number from 0 to 1e+10, got 1e+300"),
            ("nan", "test_accuracy", math.nan, "must be float, got nan"),
            ("infinite", "best_val_accuracy", math.inf, "must be float, got inf"),
            ("minus-epochs", "epochs", -3, "must be a number 0 or more, got -3")]:
        path = _damage(fake_run(root / name, epochs_done=2), folder.RESULTS, **{field: value})
        expected[name] = f"warning: {path}: the field {field!r} {says}"
    curve = fake_run(root / "infinite-curve", epochs_done=2, status=None) / folder.METRICS
    curve.write_text(curve.read_text().replace("0.54,", "inf,"))
    expected["infinite-curve"] = (f"warning: {curve} row 2: the field 'val_acc' must be a number "
                                  f"from 0 to 1, got inf")
    config = fake_run(root / "nan-setting", epochs_done=2, lr=0.1) / folder.CONFIG
    config.write_text(config.read_text().replace("lr: 0.1", "lr: .nan"))
    expected["nan-setting"] = f"warning: {config}: the setting 'lr' is nan, which no run can have"
    empty = fake_run(root / "empty-config", epochs_done=2) / folder.CONFIG
    empty.write_text("")
    expected["empty-config"] = f"warning: {empty} is empty"
    return expected


def test_impossible_numbers_make_a_run_unreadable_not_a_wrong_row(tmp_path):
    root = tmp_path / "runs"
    expected = _damaged_runs(root)
    fake_run(root / "good", epochs_done=2, lr=0.01)
    result = cnnlab_cli("runs", str(root), "--format", "json", "--sort", "name")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in _strict_json(result.stdout)}  # no NaN, no Infinity
    assert set(rows) == {*expected, "good"}
    warnings = result.stderr.splitlines()
    assert len(warnings) == len(expected), warnings
    for name, start in expected.items():
        assert sum(line.startswith(start) for line in warnings) == 1, (start, warnings)
        if "results.json" in start:  # how its training ended is unknown: nothing made up
            assert (rows[name]["status"], rows[name]["test_accuracy"]) == ("unreadable", None)
    assert rows["infinite-curve"]["best_val_accuracy"] is None
    assert rows["nan-setting"]["model"] == "?" and rows["good"]["lr"] == 0.01
    assert rows["good"]["status"] == "finished" and rows["good"]["test_accuracy"] == pytest.approx(0.53)
    table = cnnlab_cli("runs", str(root))
    assert table.returncode == 0 and "inf%" not in table.stdout and "150.00%" not in table.stdout


def test_runs_leaves_out_the_copies_an_mlflow_store_keeps(tmp_path):
    runs = tmp_path / "runs"
    cnnlab.train(data="digits", model="fast", epochs=1, mlflow="local", out=str(runs / "a"),
                 quiet=True)
    (copy,) = (runs / "mlruns").glob("*/artifacts")  # MLflow's copy of the run folder's files
    assert (copy / folder.CONFIG).is_file() and (copy / folder.WEIGHTS).is_file()
    assert [run.name for run in cnnlab.runs(runs).runs] == ["a"]
    assert cnnlab.runs(runs / "mlruns").runs == ()
    listed = cnnlab_cli("runs", str(runs))
    assert listed.returncode == 0 and "1 run under" in listed.stdout and "artifacts" not in listed.stdout


def test_listing_runs_loads_no_torch(many_runs):
    code = ("import sys, contextlib, io\n"
            "from cnnlab.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main(['runs', {str(many_runs)!r}]) == 0\n"
            "print(sorted(m for m in ('torch', 'matplotlib', 'numpy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# cnnlab compare on real runs -----------------------------------------------------------------

@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("compare") / "runs"
    first = cnnlab.train(data="digits", model="fast", epochs=1, out=str(root / "short"), quiet=True)
    second = cnnlab.train(data="digits", model="fast", epochs=2, lr=0.01, out=str(root / "longer"),
                          quiet=True)
    cnnlab.evaluate(first.path, max_shift=0, quiet=True)  # the other one compare evaluates
    return first.path, second.path


def test_compare_real_runs(two_runs):
    first, second = two_runs
    result = cnnlab_cli("compare", str(first), str(second))
    assert result.returncode == 0, result.stderr
    assert "McNemar's exact test" in result.stdout and "settings that differ" in result.stdout
    assert f"evaluated {second} on its test split first" in result.stdout
    assert f"evaluated {first} " not in result.stdout
    out = first.parent / "compare-short-longer"
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads((out / "compare.json").read_text())
    assert report["settings"] == {"epochs": [1, 2], "lr": [None, 0.01]}
    assert list(report["class_accuracy"]) == [str(digit) for digit in range(10)]
    # the paired test from the two predictions files evaluate wrote, counted here independently
    a, b = (read_predictions(run / "evaluate" / "predictions.csv") for run in two_runs)
    metrics = json.loads((first / "evaluate" / "metrics.json").read_text())
    assert len(a) == metrics["images"] == 359
    assert sum(row.correct for row in a) / len(a) == pytest.approx(metrics["accuracy"])
    right = [(x.correct, y.correct) for x, y in zip(a, b, strict=True)]
    table = [[right.count((True, True)), right.count((True, False))],
             [right.count((False, True)), right.count((False, False))]]
    (tested,) = report["pairs"]
    assert [[tested["both_right"], tested["only_first"]],
            [tested["only_second"], tested["both_wrong"]]] == table
    assert tested["p_value"] == pytest.approx(
        mcnemar(table, exact=True).pvalue, rel=1e-9)
    assert tested["disagree"] == sum(x.predicted != y.predicted
                                     for x, y in zip(a, b, strict=True))


def test_compare_in_python_uses_existing_evaluations(two_runs, tmp_path):
    comparison = cnnlab.compare(*two_runs, out=str(tmp_path / "cmp"), evaluate=False, quiet=True)
    assert comparison.evaluated == () and comparison.notes == ()
    assert comparison.names == ("short", "longer") and len(comparison.pairs) == 1
    assert [run.epochs for run in comparison.runs] == [1, 2]
    assert (tmp_path / "cmp" / "compare.json").is_file()


def _unevaluated_copy(run: Path, where: Path) -> Path:
    copy = Path(shutil.copytree(run, where))
    shutil.rmtree(copy / "evaluate", ignore_errors=True)
    return copy


def test_compare_a_run_it_cannot_evaluate_says_to_compare_without_evaluating(two_runs, tmp_path):
    first = two_runs[0]
    before = (first / "evaluate" / "metrics.json").stat().st_mtime_ns
    copy = _unevaluated_copy(two_runs[1], tmp_path / "copy")
    (copy / "evaluate").write_text("")  # a file where evaluate/ would go: no root can write there
    result = cnnlab_cli("compare", str(first), str(copy), "--out", str(tmp_path / "cmp"))
    assert result.returncode == 2
    line = error_line(result.stderr)
    assert str(copy) in line and "--no-evaluate" in line and "is a file" in line
    assert not (tmp_path / "cmp").exists()
    assert (first / "evaluate" / "metrics.json").stat().st_mtime_ns == before
    as_it_is = cnnlab_cli("compare", str(first), str(copy), "--out", str(tmp_path / "cmp"),
                          "--no-evaluate")
    assert as_it_is.returncode == 0, as_it_is.stderr
    assert f"{copy}: not evaluated" in as_it_is.stdout


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_compare_a_read_only_run_says_to_compare_without_evaluating(two_runs, tmp_path):
    copy = _unevaluated_copy(two_runs[1], tmp_path / "copy")
    copy.chmod(0o555)
    try:
        result = cnnlab_cli("compare", str(two_runs[0]), str(copy), "--out", str(tmp_path / "cmp"))
    finally:
        copy.chmod(0o755)
    assert result.returncode == 2
    line = error_line(result.stderr)
    assert f"{copy} is not writable" in line and "--no-evaluate" in line


def test_compare_says_what_is_missing(two_runs, tmp_path):
    killed = fake_run(tmp_path / "killed", epochs_done=1, status=None)
    comparison = cnnlab.compare(two_runs[0], killed, out=str(tmp_path / "cmp"))
    assert comparison.pairs == () and comparison.scores[1] is None
    assert any("no trained model" in note for note in comparison.notes)
    assert comparison.runs[1].status == "incomplete"


# one line, exit code 2 -----------------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (["compare", "{run}"], "compare needs two or more run folders, got 1"),
    (["compare", "{run}", "{empty}"], "is not a run folder"),
    (["compare", "{run}", "{run}"], "is named twice"),
    (["runs", "{empty}/nowhere"], "is not a folder"),
    (["runs", "{runs}", "--sort", "tset"], "did you mean 'test'?"),
    (["runs", "{runs}", "--out", "{empty}/runs.txt"], "name a .csv or .json file"),
    (["runs", "{runs}", "--format", "xml"], "unknown format 'xml'"),
])
def test_bad_input_is_one_line_with_exit_code_2(args, message, tmp_path):
    runs = tmp_path / "runs"
    run = fake_run(runs / "a", epochs_done=1)
    (tmp_path / "empty").mkdir()
    filled = [arg.format(run=run, empty=tmp_path / "empty", runs=runs) for arg in args]
    result = cnnlab_cli(*filled)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
