"""LR sweeps, the recording half: does the optimal learning rate transfer across width (μTransfer, TP5 Fig. 1),
or across depth (Depth-μP, CompleteP)?

A sweep trains every (width, learning rate, seed) job — (width, depth, learning rate, seed) with depths, the
model then built as ``model(width, depth)`` — for N steps on the spec's data *stream* (a fresh
batch per step, unlike the coord check's fixed batch), records the train loss of every step and one
held-out loss at the end, and stores them as one Parquet shard per job (:data:`SCHEMA`) next to a
``meta.json`` of kind ``lrsweep``. A job whose loss turns NaN/inf stops there and is recorded as diverged
(its rows keep the non-finite value); the sweep goes on. A depth sweep's shards carry a ``depth`` column
(:data:`DEPTH_SCHEMA`); a width sweep's stay as they always were. :mod:`coordscope.transfer` judges the result.

Output directories are local paths or ``file://`` URIs (other pyarrow filesystems are refused for now).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from coordscope.config import ConfigSource
from coordscope.device import seed_everything, to_device
from coordscope.errors import SpecError
from coordscope.orchestrate import execute_run, new_meta
from coordscope.runmeta import JobRecord
from coordscope.settings import EVAL_BATCHES, resolve_sweep
from coordscope.spec import (
    Spec,
    build_model,
    checked_loss,
    first_batch,
    load_spec,
    make_optimizer,
    optimizer_step,
    rehearse,
    set_mode,
)
from coordscope.store import ShardWriter

KIND = "lrsweep"
SCHEMA = pa.schema(
    [
        ("run", pa.string()),
        ("width", pa.int64()),
        ("seed", pa.int64()),
        ("lr", pa.float64()),
        ("step", pa.int64()),
        ("split", pa.string()),  # "train": the loss of that step's batch; "heldout": once, at step N
        ("loss", pa.float64()),
        ("diverged", pa.bool_()),  # the job's loss became NaN/inf (every row of the job carries it)
    ]
)
DEPTH_SCHEMA = SCHEMA.insert(2, pa.field("depth", pa.int64()))  # a depth sweep's rows: the job's depth too


def shard_name(width: int, lr_index: int, seed: int, depth: int | None = None) -> str:
    """The shard of job (width, lr, seed) — (width, depth, lr, seed) in a depth sweep; the lr by its index in
    the grid, so names are exact."""
    where = f"w{width}" if depth is None else f"w{width}-d{depth}"
    return f"shard-{where}-lr{lr_index}-s{seed}.parquet"


@dataclass(frozen=True)
class SweepJob:
    """One (width, lr, seed) job (with ``depth``: built as ``model(width, depth)``); picklable when ``spec``
    is a reference."""

    spec: Spec | str
    width: int
    lr: float
    lr_index: int
    seed: int
    steps: int
    run_dir: str
    run: str
    eval_batches: int = EVAL_BATCHES
    device: str = "cpu"
    depth: int | None = None


def _heldout_batches(spec: Spec, stream: Any, count: int) -> list[Any]:
    """The first ``count`` batches of the spec's ``heldout()``, else the next ``count`` batches of the
    training stream (data the job never trained on, though from the same distribution)."""
    batches = list(islice(iter(spec.heldout()) if spec.heldout is not None else stream, count))
    if not batches:
        raise SpecError(f"spec {spec.ref!r}: no held-out batches (heldout() or batches() yielded nothing)")
    return batches


def train_job(job: SweepJob) -> str:
    """Train one model for ``job.steps`` steps on the spec's stream; write its losses; return the shard path.

    Row at step t = the loss of batch t under the parameters after t updates (t = 0..N−1), then one
    held-out row at step N. A non-finite train or held-out loss stops the job and marks it diverged.
    """
    spec = load_spec(job.spec)
    seed_everything(job.seed, job.device)
    model = build_model(spec, job.width, job.depth).to(job.device)
    optimizer = make_optimizer(spec, model, job.lr, job.width)
    stream = iter(spec.batches())
    losses: list[float] = []
    model.train()
    for step in range(job.steps):
        try:
            batch = to_device(next(stream), job.device, torch.float32)
        except StopIteration:
            raise SpecError(f"spec {spec.ref!r}: batches() ran out after {step} batches; a sweep of "
                            f"{job.steps} steps needs that many (make it endless)") from None
        loss = checked_loss(spec, model, batch, job.width, step)
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer_step(spec, optimizer, job.width, step)
    diverged = not math.isfinite(losses[-1])
    heldout = math.nan
    if not diverged:
        model.eval()
        set_mode(optimizer, train=False)  # ScheduleFree: score the averaged weights, as it is deployed
        with torch.no_grad():
            values = [float(checked_loss(spec, model, to_device(b, job.device, torch.float32), job.width,
                                         job.steps)) for b in _heldout_batches(spec, stream, job.eval_batches)]
        heldout = float(np.mean(values))
        diverged = not math.isfinite(heldout)
    n = len(losses) + 1
    depth = {} if job.depth is None else {"depth": [job.depth] * n}
    table = pa.table(
        {
            "run": [job.run] * n,
            "width": [job.width] * n,
            **depth,
            "seed": [job.seed] * n,
            "lr": [job.lr] * n,
            "step": [*range(len(losses)), job.steps],
            "split": ["train"] * len(losses) + ["heldout"],
            "loss": [*losses, heldout],
            "diverged": [diverged] * n,
        },
        schema=SCHEMA if job.depth is None else DEPTH_SCHEMA,
    )
    filename = shard_name(job.width, job.lr_index, job.seed, job.depth)
    with ShardWriter(Path(job.run_dir), job.run, job.width, job.seed, filename, schema=table.schema) as writer:
        writer.write_table(table)
        return str(writer.commit())


def sweep(
    spec: Spec | str,
    *,
    widths: Any = None,
    depths: Any = None,
    lrs: Any = None,
    steps: Any = None,
    seeds: Any = None,
    out: str | os.PathLike[str] | None = None,
    executor: str | None = None,
    workers: int | None = None,
    eval_batches: int = EVAL_BATCHES,
    device: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    config: ConfigSource = None,
) -> Path:
    """Train every (width, lr, seed) job of ``spec`` for ``steps`` steps and return the sweep directory.
    With ``depths`` (two or more), every (width, depth, lr, seed) job, the model built as ``model(width,
    depth)``: the sweep then says whether the optimal learning rate transfers across depth.

    Unset settings come from ``[tool.coordscope.sweep]`` of ``config`` (None: the nearest pyproject.toml),
    then the spec's ``DEFAULTS["sweep"]``, then coordscope's (widths 64..512 — one width, 128, when depths
    are swept and no widths are set —, lrs 2^-14..2^-4, 100 steps, one seed, no depths); ``out`` defaults
    to ``runs/<spec>-<time>``. ``seeds``: a count N (seeds 0..N−1) or a list.
    With ``resume``, jobs whose shard exists are skipped (the settings must match the existing sweep's).
    Jobs that fail are re-raised after the others finish; the sweep is then marked ``incomplete``.
    """
    settings = resolve_sweep(spec, config=config, widths=widths, depths=depths, lrs=lrs, steps=steps, seeds=seeds,
                             executor=executor, workers=workers, device=device, eval_batches=eval_batches,
                             out=out, overwrite=overwrite, resume=resume, progress=progress)
    assert settings.lrs is not None and settings.eval_batches is not None  # resolve_sweep sets both
    # The user's model, loss and optimizer fail here, in one line, before anything is written.
    depth_grid: tuple[int | None, ...] = settings.depths or (None,)
    optimizer = rehearse(settings.spec, settings.widths[0], settings.lrs[0], first_batch(settings.spec),
                         depth_grid[0])
    template = SweepJob(spec=settings.spec if settings.executor == "inline" else settings.spec.ref, width=0,
                        lr=0.0, lr_index=0, seed=0, steps=settings.steps, run_dir=str(settings.out),
                        run=settings.out.resolve().name, eval_batches=settings.eval_batches, device=settings.device)
    # Widest (and deepest) first: the longest jobs start early, so workers do not idle at the end.
    grid = sorted(((w, d, i, lr, s) for w in settings.widths for d in depth_grid for i, lr in enumerate(settings.lrs)
                   for s in settings.seeds), key=lambda job: (-job[0], -(job[1] or 0)))
    jobs = [replace(template, width=w, depth=d, lr=lr, lr_index=i, seed=s) for w, d, i, lr, s in grid]
    records = [JobRecord(w, s, shard_name(w, i, s, d), lr, d) for w, d, i, lr, s in grid]
    return execute_run(settings, jobs, records, train_job,
                       lambda run_dir: new_meta(settings, run_dir, records, optimizer=optimizer))
