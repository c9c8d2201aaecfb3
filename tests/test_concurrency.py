"""Two runs writing at once, and a reader reading a run while it is being written."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import coordscope
from coordscope.errors import StoreError
from coordscope.runmeta import read_meta
from coordscope.store import is_complete


@pytest.mark.slow
def test_two_runs_at_once_and_a_reader_during_the_write(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["--widths", "64,128,256", "--steps", "15", "--seeds", "2"]
    procs = {name: subprocess.Popen([sys.executable, "-m", "coordscope", "run", "mlp-" + name, *args,
                                     "--out", str(tmp_path / name)], env=env, stderr=subprocess.PIPE, text=True)
             for name in ("mup", "sp")}
    seen_partial = False
    rows_per_job = None
    while any(p.poll() is None for p in procs.values()):
        try:
            status = read_meta(tmp_path / "mup").status  # read before the shards: the run may finish between
            frame = coordscope.load(tmp_path / "mup")
        except StoreError as exc:  # not started, or no job finished yet: said in one line
            assert any(s in str(exc) for s in ("no finished shards yet", "missing", "does not exist"))
            time.sleep(0.02)
            continue
        jobs = frame.group_by("width", "seed").len()
        # a reader only ever sees whole jobs, each with the same number of rows
        assert jobs["len"].n_unique() == 1
        rows_per_job = jobs["len"][0]
        if jobs.height < 6:
            seen_partial = True
            assert status == "running"  # fewer jobs than planned is never presented as complete
        time.sleep(0.02)
    for name, proc in procs.items():
        assert proc.returncode == 0, (name, proc.stderr.read() if proc.stderr else "")
        assert is_complete(tmp_path / name)
    final = coordscope.load(tmp_path / "mup")
    assert final.group_by("width", "seed").len()["len"].to_list() == [rows_per_job] * 6
    assert seen_partial  # the reader did look while the run was being written
