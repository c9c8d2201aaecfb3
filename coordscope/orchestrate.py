"""What a coordinate check and an LR sweep share: make or reopen the run directory, write ``meta.json``,
run the missing jobs on an executor, and keep the run's status true.

``meta.json`` is written with status ``running`` before the first job and rewritten ``complete`` after the
last; an exception or Ctrl-C marks it ``incomplete``. A run killed outright stays ``running`` with some
shards missing — readers compare ``jobs`` with the shards on disk, and ``resume`` runs only the jobs
whose shard is missing, so an interrupted run can be finished with exactly the rows of an uninterrupted
one.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

from coordscope.errors import ConfigError
from coordscope.executors import execute
from coordscope.runmeta import SCHEMA_VERSION, JobRecord, RunMeta, read_meta, update_meta, write_meta
from coordscope.settings import RunSettings
from coordscope.store import prepare_run_dir, remove_stale_temporaries

J = TypeVar("J")


def versions() -> dict[str, str]:
    """Versions that decide whether two runs are comparable."""
    return {name: version(name) for name in ("coordscope", "torch", "polars")} | {
        "python": platform.python_version()}


def new_meta(settings: RunSettings, run_dir: Path, jobs: Sequence[JobRecord], **extra: Any) -> RunMeta:
    """The ``meta.json`` of a run about to start (status ``running``); ``extra``: the kind's own fields."""
    return RunMeta(
        kind=settings.kind, run=run_dir.resolve().name, spec=settings.spec.ref, widths=settings.widths,
        seeds=settings.seeds, steps=settings.steps, jobs=tuple(jobs), description=settings.spec.description,
        lr=settings.lr, lrs=settings.lrs, probes=settings.probes, device=settings.device, dtype=settings.dtype,
        eval_batches=settings.eval_batches, exact=settings.exact, depths=settings.depths,
        dims=None if settings.dim is None else {settings.dim[0]: settings.dim[1]}, versions=versions(),
        created=time.strftime("%Y-%m-%dT%H:%M:%S"), schema_version=SCHEMA_VERSION, **extra,
    )


def _recorded_plan(meta: RunMeta) -> dict[str, Any]:
    return {"spec": meta.spec, "widths": list(meta.widths), "seeds": list(meta.seeds), "steps": meta.steps,
            "lr": meta.lr, "lrs": None if meta.lrs is None else list(meta.lrs), "probes": list(meta.probes),
            "eval_batches": meta.eval_batches, "exact": meta.exact,
            "depths": None if meta.depths is None else list(meta.depths),
            "dims": None if meta.dims is None else {k: list(v) for k, v in meta.dims.items()}}


def _check_resumable(meta: RunMeta, settings: RunSettings, run_dir: Path) -> None:
    if meta.kind != settings.kind:
        raise ConfigError(f"cannot resume {str(run_dir)!r}: it is a {meta.kind!r} run, not a {settings.kind!r} one")
    recorded = _recorded_plan(meta)
    for key, value in settings.plan().items():
        if recorded[key] != value:
            raise ConfigError(f"cannot resume: the run has {key}={recorded[key]!r}, this command asks for {value!r}")


def execute_run(settings: RunSettings, jobs: Sequence[J], records: Sequence[JobRecord],
                job_fn: Callable[[J], str], make_meta: Callable[[Path], RunMeta]) -> Path:
    """Run ``jobs`` (``records[i]`` is the plan entry of ``jobs[i]``) into ``settings.out`` and return it.

    Call this only once everything that can be checked has been: it is what first touches the disk.
    ``make_meta(run_dir)`` builds a fresh run's record; a resumed run keeps its own and runs only the
    jobs without a shard.
    """
    run_dir = prepare_run_dir(settings.out, overwrite=settings.overwrite, resume=settings.resume)
    if settings.resume:
        meta = read_meta(run_dir)
        _check_resumable(meta, settings, run_dir)
        remove_stale_temporaries(run_dir)
    else:
        meta = make_meta(run_dir)
        write_meta(run_dir, meta)
    pending = [job for job, record in zip(jobs, records, strict=True)
               if not (settings.resume and (run_dir / record.shard).is_file())]
    try:
        update_meta(run_dir, status="running")
        execute(job_fn, pending, executor=settings.executor, workers=settings.workers, progress=settings.progress,
                desc=f"{'sweep' if settings.kind == 'lrsweep' else 'coord check'} {Path(settings.spec.ref).name}")
    except BaseException as exc:
        update_meta(run_dir, status="incomplete", error=f"{type(exc).__name__}: {exc}".split("\n")[0])
        raise
    update_meta(run_dir, status="complete", error=None)
    return run_dir
