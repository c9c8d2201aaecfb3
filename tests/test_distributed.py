"""Under torchrun (2 processes, gloo, CPU): DDP and FSDP2 give the statistics of the unsharded model, one
collective per step, and only rank 0 writes. The job itself is tests/distributed_job.py."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import coordscope

JOB = Path(__file__).with_name("distributed_job.py")
STEPS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_job(out: Path, mode: str, *extra: str) -> None:
    """The job in one process (``single``) or under ``torchrun --nproc_per_node 2``."""
    job = [str(JOB), "--mode", mode, "--out", str(out), "--steps", str(STEPS), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for _ in range(3):  # a free port can be taken by someone else before torchrun binds it
        args = job if mode == "single" else [
            "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(_free_port()), *job]
        done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, env=env)
        if done.returncode == 0 or "ddress already in use" not in done.stderr:
            break
    assert done.returncode == 0, done.stderr[-3000:]


def rows(run_dir: Path) -> dict[tuple[int, str, str, str], float]:
    frame = coordscope.load(run_dir)
    return {(r["step"], r["name"], r["site"], r["probe"]): r["value"] for r in frame.iter_rows(named=True)}


def assert_same_statistics(single: Path, sharded: Path) -> None:
    want, got = rows(single), rows(sharded)
    assert set(got) == set(want)
    sites = {key[2] for key in want}
    assert sites == {"act", "act_delta", "act_grad", "param", "param_grad", "param_update", "loss"}
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-9), key


def assert_rank0_wrote_alone(run_dir: Path) -> None:
    assert sorted(p.name for p in run_dir.glob("shard-*")) == ["shard-w128-s0.parquet"]
    assert not list(run_dir.glob(".*"))  # no temporary shard of another rank, no lock
    for rank in (0, 1):
        calls = json.loads((run_dir / f"calls-rank{rank}.json").read_text())
        # one all_gather per step, plus two once: rank 0's verdict on the run directory at the start and the
        # list of what step 0 records
        assert calls["collectives"] == (STEPS + 1) + 2, calls


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist") / "single"
    run_job(out, "single")
    return out


def test_fsdp2_statistics_equal_the_single_process_run(single, tmp_path):
    run_job(tmp_path / "fsdp", "fsdp")
    assert_same_statistics(single, tmp_path / "fsdp")
    assert_rank0_wrote_alone(tmp_path / "fsdp")
    assert coordscope.read_meta(tmp_path / "fsdp").status == "complete"
    modules = set(coordscope.load(tmp_path / "fsdp")["module"])
    assert "Linear" in modules and not any(m.startswith("FSDP") for m in modules)  # as an unsharded run names them


def test_ddp_statistics_equal_the_single_process_run(single, tmp_path):
    run_job(tmp_path / "ddp", "ddp")
    assert_same_statistics(single, tmp_path / "ddp")
    assert_rank0_wrote_alone(tmp_path / "ddp")


def test_fsdp2_with_changing_batches_measures_the_fixed_batch_like_one_process(tmp_path):
    """Each step's own batch differs: every rank runs the extra pass (an FSDP2 forward, a collective) alike."""
    run_job(tmp_path / "single", "single", "--changing")
    run_job(tmp_path / "fsdp", "fsdp", "--changing")
    assert_same_statistics(tmp_path / "single", tmp_path / "fsdp")
