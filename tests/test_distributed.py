"""Data-parallel training: torchrun starts two CPU processes (gloo) that train one run together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import cnnlab
from cnnlab.base.distributed import Ranks, shard
from cnnlab.run.folder import load_checkpoint

from .helpers import read_rows

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


def _torchrun(out: Path, *extra: str) -> list[str]:
    return [*TORCHRUN, "-m", "cnnlab", "train", "--data", "digits", "--epochs", "4",
            "--batch-size", "32", "--out", str(out), "--quiet", *extra]


def test_shards_cover_the_epoch_once_with_equal_lengths():
    order = torch.randperm(11)
    parts = [shard(order, Ranks(rank, 3, rank, 3)) for rank in range(3)]
    assert {len(p) for p in parts} == {4}
    covered = torch.cat(parts)
    assert set(covered.tolist()) == set(range(11))  # every image, one padded repeat at most
    assert len(covered) - len(set(covered.tolist())) == 1


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "run"
    subprocess.run(_torchrun(out), check=True, env=ENV, timeout=600)
    return out


def test_two_processes_train_one_run(ddp_run):
    run = ddp_run
    assert sorted(p.name for p in run.parent.iterdir()) == ["run"]  # rank 1 made no folder
    for name in ("config.yaml", "model.safetensors", "model.json", "metrics.csv", "last.ckpt"):
        assert (run / name).is_file()
    rows = read_rows(run / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["val_acc"]) > 0.9
    # the logged validation accuracy is all ranks' together, of the model rank 0 saved
    best = max(rows, key=lambda row: float(row["val_acc"]))
    metrics = cnnlab.evaluate(run, split="val", max_shift=0).metrics
    assert metrics.accuracy == pytest.approx(float(best["val_acc"]), abs=1e-6)


@pytest.mark.slow  # minutes of the plain suite: run with -m slow, as CI does
def test_killed_run_resumes_on_two_processes_bit_identical(ddp_run, tmp_path):
    killed = tmp_path / "killed"
    process = subprocess.Popen(_torchrun(killed), env=ENV, start_new_session=True)
    deadline = time.time() + 300
    while len(read_rows(killed / "metrics.csv", missing_ok=True)) < 2 and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # torchrun and both of its workers
    process.wait()
    assert 2 <= len(read_rows(killed / "metrics.csv")) < 4
    subprocess.run([*TORCHRUN, "-m", "cnnlab", "train", "--resume", str(killed), "--quiet"],
                   check=True, env=ENV, timeout=600)
    a, b = (load_checkpoint(run / "last.ckpt")["model"] for run in (ddp_run, killed))
    assert all(torch.equal(a[k], b[k]) for k in a)
