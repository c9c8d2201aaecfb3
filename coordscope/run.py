"""A coordinate check end to end: resolve settings, find roles, plan jobs, execute them, mark the run.

``meta.json`` is written with status ``running`` before the first job and rewritten ``complete`` after the
last; an exception or Ctrl-C marks it ``incomplete``. A run killed outright stays ``running`` with some
shards missing — readers compare ``jobs`` with the shards on disk, and ``resume=True`` runs only the jobs
whose shard is missing, so an interrupted run can be finished with exactly the rows of an uninterrupted one.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from coordscope.errors import ConfigError
from coordscope.job import DTYPES, Job, record_job, seed_everything
from coordscope.plan import Settings, resolve
from coordscope.shapes import infer_layers
from coordscope.spec import Spec, build_model, load_spec
from coordscope.store import (
    SCHEMA_VERSION,
    prepare_run_dir,
    read_meta,
    remove_stale_temporaries,
    shard_name,
    update_meta,
    write_meta,
)


def versions() -> dict[str, str]:
    """Versions that decide whether two runs are comparable."""
    import polars

    from coordscope import __version__

    return {"coordscope": __version__, "torch": torch.__version__, "polars": polars.__version__,
            "python": platform.python_version()}


def default_out(spec: Spec) -> Path:
    """``runs/<spec>-<time>``: a fresh directory per run unless the user names one."""
    stem = Path(spec.ref.split(":")[-1]).stem.replace("/", "_") or "run"
    return Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def _optimizer_name(spec: Spec, width: int, lr: float) -> str:
    seed_everything(0)
    optimizer = spec.make_optimizer(build_model(spec, width), lr)
    return type(optimizer).__name__


def _check_resumable(meta: dict[str, Any], spec: Spec, settings: Settings) -> None:
    wanted = {"spec": spec.ref, "widths": list(settings.widths), "seeds": list(settings.seeds),
              "steps": settings.steps, "lr": settings.lr, "probes": list(settings.probes)}
    for key, value in wanted.items():
        if meta.get(key) != value:
            raise ConfigError(f"cannot resume: the run has {key}={meta.get(key)!r}, this command asks "
                              f"for {value!r}")


def run(
    spec: Spec | str,
    *,
    widths: Any = None,
    steps: Any = None,
    seeds: Any = None,
    lr: Any = None,
    probes: Any = None,
    out: str | os.PathLike[str] | None = None,
    executor: str = "inline",
    workers: int | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Record a coordinate check of ``spec`` and return its run directory.

    ``spec``: a :class:`Spec`, a sample name, a ``.py`` file, ``module`` or ``module:attr``.
    ``seeds``: a count N (seeds 0..N−1) or a list. Unset settings come from the spec's ``DEFAULTS``, then
    from coordscope's (widths 64..512, 5 steps, 3 seeds, lr 0.01, probe ``rms``).
    """
    spec = load_spec(spec)
    settings = resolve(spec.defaults, widths=widths, seeds=seeds, steps=steps, lr=lr, probes=probes)
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
    if executor != "inline" and spec.ref == "<object>":
        raise ConfigError(f"executor {executor!r} needs a spec that workers can import: pass a file, module "
                          "or module:attr instead of a Spec object (or give the Spec a ref)")
    layers = infer_layers(spec, (settings.widths[0], settings.widths[1]))  # a broken spec fails here,
    run_dir = prepare_run_dir(out if out is not None else default_out(spec),  # before anything is written
                              overwrite=overwrite, resume=resume)
    name = run_dir.resolve().name
    if resume:
        _check_resumable(read_meta(run_dir), spec, settings)
        remove_stale_temporaries(run_dir)
    else:
        meta = {
            "schema_version": SCHEMA_VERSION, "kind": "coordcheck", "run": name, "spec": spec.ref,
            "description": spec.description, "widths": list(settings.widths), "seeds": list(settings.seeds),
            "steps": settings.steps, "lr": settings.lr, "probes": list(settings.probes),
            "optimizer": _optimizer_name(spec, settings.widths[0], settings.lr), "device": device,
            "dtype": dtype, "status": "running", "versions": versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "jobs": [{"width": w, "seed": s, "shard": shard_name(w, s)}
                     for w in settings.widths for s in settings.seeds],
            "layers": {n: layer.to_json() for n, layer in layers.items()},
        }
        write_meta(run_dir, meta)
    template = Job(spec=spec if executor == "inline" else spec.ref, width=0, seed=0, steps=settings.steps,
                   lr=settings.lr, probes=settings.probes, run_dir=str(run_dir), run=name, layers=layers,
                   device=device, dtype=dtype)
    jobs = [replace(template, width=w, seed=s) for w in settings.widths for s in settings.seeds
            if not (resume and (run_dir / shard_name(w, s)).is_file())]
    try:
        update_meta(run_dir, status="running")
        _execute(jobs, settings, executor, workers, progress, Path(spec.ref).name)
    except BaseException as exc:
        update_meta(run_dir, status="incomplete", error=f"{type(exc).__name__}: {exc}".split("\n")[0])
        raise
    update_meta(run_dir, status="complete", error=None)
    return run_dir


def _execute(jobs: list[Job], settings: Settings, executor: str, workers: int | None, progress: bool,
             desc: str) -> None:
    """Run the jobs: inline with a bar over every step, elsewhere through :mod:`coordscope.executors`."""
    if executor == "inline":
        with tqdm(total=len(jobs) * (settings.steps + 1), desc=desc, unit="step", disable=not progress) as bar:
            for job in jobs:
                bar.set_postfix(width=job.width, seed=job.seed)
                record_job(job, on_step=lambda: bar.update(1))
        return
    from coordscope.executors import execute

    execute(record_job, jobs, executor=executor, workers=workers, desc=desc)
