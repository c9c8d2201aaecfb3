"""A run killed with SIGKILL keeps every finished shard, is not mistaken for a result, and resumes to
exactly the rows of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

import coordscope
from coordscope.runmeta import read_meta
from coordscope.store import is_complete, missing_jobs, shard_paths

ARGS = ["mlp-mup", "--widths", "64,128,256,512", "--steps", "25", "--seeds", "2"]
KEY = ["width", "seed", "step", "name", "site", "probe"]


def _cli(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "coordscope", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _kill_after(out: Path, shards: int) -> None:
    proc = _cli("run", *ARGS, "--out", str(out))
    deadline = time.time() + 300
    while time.time() < deadline:
        done = len(shard_paths(out)) if (out / "meta.json").exists() else -1
        if done >= shards:
            break
        if proc.poll() is not None:
            pytest.fail(f"run ended before it could be killed: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.drop("run").sort(KEY)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> pl.DataFrame:
    out = tmp_path_factory.mktemp("ref") / "run"
    proc = _cli("run", *ARGS, "--out", str(out))
    assert proc.wait() == 0, proc.stderr.read() if proc.stderr else ""
    return _sorted(coordscope.load(out))


@pytest.mark.slow
@pytest.mark.parametrize("shards", [0, 1, 5])
def test_killed_run_keeps_finished_shards_and_resumes_exactly(tmp_path, reference, shards):
    out = tmp_path / "run"
    _kill_after(out, shards)
    meta = read_meta(out)
    assert meta.status == "running" and not is_complete(out)
    finished = shard_paths(out)
    assert len(finished) >= shards and len(missing_jobs(out)) == 8 - len(finished)
    for path in finished:  # every file under a final name is a whole, readable job
        assert pq.read_table(path).num_rows == reference.filter(
            width=int(path.name.split("-w")[1].split("-")[0]), seed=int(path.name.split("-s")[1][0])).height

    proc = _cli("run", *ARGS, "--out", str(out), "--resume")
    assert proc.wait() == 0, proc.stderr.read() if proc.stderr else ""
    assert is_complete(out)
    assert not list(out.glob(".*.tmp"))
    resumed = _sorted(coordscope.load(out))
    assert resumed.height == reference.height  # no duplicates, nothing missing
    assert resumed.equals(reference)


def test_resume_refuses_different_settings(tmp_path):
    out = tmp_path / "run"
    coordscope.run("mlp-mup", widths=[64, 128], steps=1, seeds=1, out=out, progress=False)
    with pytest.raises(coordscope.ConfigError, match="cannot resume: the run has steps=1"):
        coordscope.run("mlp-mup", widths=[64, 128], steps=2, seeds=1, out=out, resume=True, progress=False)
