"""Executors: inline, worker processes and Ray give the same sweep rows; failures and killed workers lose
no other job's results."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from coordscope.errors import ConfigError
from coordscope.executors import WorkerDied, execute
from coordscope.lrsweep import shard_name, sweep
from coordscope.runmeta import read_meta
from coordscope.spec import load_spec
from coordscope.transfer import analyse_sweep, load_sweep

SPEC = str(Path(__file__).with_name("sweep_spec.py"))
GRID = {"widths": [8, 16, 32], "lrs": [2.0**-8, 2.0**-5, 2.0**-2], "steps": 6, "seeds": 2}


def touch_then_maybe_fail(item: tuple[str, int]) -> int:
    """Leave a marker file for the job, fail job 1, return the square of the others (runs in workers)."""
    directory, n = item
    Path(directory, f"job{n}").write_text(str(os.getpid()))
    if n == 1:
        raise ValueError("job 1 fails on purpose")
    return n * n


def _rows(run_dir: Path) -> pl.DataFrame:
    return load_sweep(run_dir).drop("run").sort("width", "lr", "seed", "split", "step")


def _assert_same_rows(a: Path, b: Path) -> None:
    left, right = _rows(a), _rows(b)
    assert left.drop("loss").equals(right.drop("loss"))
    np.testing.assert_allclose(left["loss"].to_numpy(), right["loss"].to_numpy(), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def inline_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sweep(SPEC, **GRID, out=tmp_path_factory.mktemp("inline") / "sweep")


def test_processes_give_the_same_rows_as_inline(inline_sweep: Path, tmp_path: Path) -> None:
    run_dir = sweep(SPEC, **GRID, out=tmp_path / "sweep", executor="processes", workers=2)
    _assert_same_rows(inline_sweep, run_dir)
    assert read_meta(run_dir).status == "complete"


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (coordscope[ray])")
def test_ray_gives_the_same_rows_as_inline(inline_sweep: Path, tmp_path: Path) -> None:
    import ray

    try:
        run_dir = sweep(SPEC, **GRID, out=tmp_path / "sweep", executor="ray", workers=2)
        _assert_same_rows(inline_sweep, run_dir)
        with pytest.raises(ValueError, match="on purpose"):  # a task's own exception comes back
            execute(touch_then_maybe_fail, [(str(tmp_path), n) for n in range(3)], executor="ray")
        assert sorted(p.name for p in tmp_path.glob("job*")) == ["job0", "job1", "job2"]
        crashed = tmp_path / "crash"
        with pytest.raises(WorkerDied):  # a task that kills its worker is not retried; the others finish
            sweep(f"{SPEC}:CRASHING", **{**GRID, "seeds": 1}, out=crashed, executor="ray")
        assert sorted(p.name for p in crashed.glob("shard-*")) == sorted(
            shard_name(w, i, 0) for w in (8, 32) for i in range(3))
    finally:
        ray.shutdown()


@pytest.mark.parametrize("executor", ["inline", "processes"])
def test_results_in_order_and_a_failure_raised_after_the_others_ran(executor: str, tmp_path: Path) -> None:
    items = [(str(tmp_path), n) for n in (0, 2, 3)]
    assert execute(touch_then_maybe_fail, items, executor=executor, workers=2) == [0, 4, 9]
    with pytest.raises(ValueError, match="on purpose"):
        execute(touch_then_maybe_fail, [(str(tmp_path), n) for n in range(6)], executor=executor, workers=2)
    assert sorted(p.name for p in tmp_path.glob("job*")) == [f"job{n}" for n in range(6)]


def test_a_killed_worker_fails_only_its_own_jobs(tmp_path: Path) -> None:
    """The width-16 jobs SIGKILL their worker mid-run; every other job still finishes and keeps its shard."""
    grid = {**GRID, "seeds": 1}
    with pytest.raises(WorkerDied, match="died"):
        sweep(f"{SPEC}:CRASHING", **grid, out=tmp_path / "sweep", executor="processes", workers=2)
    run_dir = tmp_path / "sweep"
    shards = sorted(p.name for p in run_dir.glob("shard-*"))
    assert shards == sorted(shard_name(w, i, 0) for w in (8, 32) for i in range(3))
    assert read_meta(run_dir).status == "incomplete"
    report = analyse_sweep(run_dir)
    assert not report.complete and not report.ok and any("3 of 9 jobs" in w for w in report.warnings)


def test_bad_executor_settings_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown executor"):
        execute(abs, [1], executor="threads")
    with pytest.raises(ConfigError, match="workers"):
        execute(abs, [1], executor="processes", workers=0)
    with pytest.raises(ConfigError, match="Spec object"):
        execute(abs, [load_spec(SPEC)], executor="processes")
    spec_object = load_spec(f"{SPEC}:CRASHING").__class__(model=lambda w: None, batches=list)  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigError, match="Spec object"):
        sweep(spec_object, **GRID, out=tmp_path / "x", executor="processes")
