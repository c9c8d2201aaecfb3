"""Learning-rate sweeps: does the optimal learning rate transfer across width (μTransfer, TP5 Fig. 1)?

A sweep trains every (width, learning rate, seed) job for N steps on the spec's data *stream* (a fresh
batch per step, unlike the coord check's fixed batch), records the train loss of every step and one
held-out loss at the end, and stores them as one Parquet shard per job (:data:`SCHEMA`) next to a
``meta.json`` of kind ``lrsweep``. A job whose loss turns NaN/inf stops there and is recorded as diverged
(its rows keep the non-finite value); the sweep goes on.

The analysis (:func:`analyse_sweep`) finds, per width and seed, the learning rate of lowest loss on the
log2 grid and refines it with the vertex of the parabola through that point and its two neighbours. The
*drift* is the least-squares slope of the optimal log2 LR against log2 width — how many log2 units the
optimum moves per doubling of width. Under μP it is about 0; under SP with Adam the optimum falls roughly
like 1/width. The sweep transfers when ``|drift| <= tolerance``.

Output directories are local paths or ``file://`` URIs (other pyarrow filesystems are refused for now).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import islice, pairwise
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import torch
from numpy.typing import ArrayLike

from coordscope.errors import ConfigError, SpecError, StoreError
from coordscope.job import checked_loss, seed_everything, to_device
from coordscope.plan import check_lr, check_seeds, check_steps, check_widths
from coordscope.spec import Spec, build_model, load_spec
from coordscope.store import (
    SCHEMA_VERSION,
    ShardWriter,
    missing_jobs,
    prepare_run_dir,
    read_meta,
    remove_stale_temporaries,
    shard_paths,
    update_meta,
    write_meta,
)

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
METRICS = ("heldout", "train")
TOLERANCE = 0.25  # |drift| in log2 LR per doubling of width that still counts as "transfers"
EVAL_BATCHES = 8  # held-out batches each job is scored on at the end
DEFAULTS: dict[str, Any] = {"widths": [64, 128, 256, 512], "lrs": [2.0**e for e in range(-14, -3)], "steps": 100,
                            "seeds": 1}


def shard_name(width: int, lr_index: int, seed: int) -> str:
    """The shard of job (width, lr, seed); the lr by its index in the grid, so names are exact."""
    return f"shard-w{width}-lr{lr_index}-s{seed}.parquet"


def local_dir(out: str | os.PathLike[str]) -> Path:
    """A local path for ``out``: a path, or a URI that pyarrow resolves to the local filesystem."""
    text = os.fspath(out)
    if "://" not in text:
        return Path(text)
    from pyarrow import fs

    try:
        filesystem, path = fs.FileSystem.from_uri(text)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise ConfigError(f"output {text!r}: not a filesystem URI pyarrow understands ({exc})") from None
    if not isinstance(filesystem, fs.LocalFileSystem):
        raise ConfigError(f"output {text!r}: only local directories and file:// URIs are supported "
                          f"(got a {type(filesystem).__name__})")
    return Path(path)


@dataclass(frozen=True)
class SweepJob:
    """One (width, lr, seed) job; picklable when ``spec`` is a reference."""

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
    model = build_model(spec, job.width).to(job.device)
    optimizer = spec.make_optimizer(model, job.lr)
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
        optimizer.step()
    diverged = not math.isfinite(losses[-1])
    heldout = math.nan
    if not diverged:
        model.eval()
        with torch.no_grad():
            values = [float(checked_loss(spec, model, to_device(b, job.device, torch.float32), job.width,
                                         job.steps)) for b in _heldout_batches(spec, stream, job.eval_batches)]
        heldout = float(np.mean(values))
        diverged = not math.isfinite(heldout)
    n = len(losses) + 1
    table = pa.table(
        {
            "run": [job.run] * n,
            "width": [job.width] * n,
            "seed": [job.seed] * n,
            "lr": [job.lr] * n,
            "step": [*range(len(losses)), job.steps],
            "split": ["train"] * len(losses) + ["heldout"],
            "loss": [*losses, heldout],
            "diverged": [diverged] * n,
        },
        schema=SCHEMA,
    )
    filename = shard_name(job.width, job.lr_index, job.seed)
    with ShardWriter(Path(job.run_dir), job.run, job.width, job.seed, filename, schema=SCHEMA) as writer:
        writer.write_table(table)
        return str(writer.commit())


def check_lrs(lrs: Any) -> tuple[float, ...]:
    """At least three distinct positive learning rates, increasing (a parabola needs three points)."""
    if isinstance(lrs, (str, bytes)) or not isinstance(lrs, Sequence):
        raise ConfigError(f"lrs must be a list of numbers, got {lrs!r}")
    values = tuple(check_lr(lr, "lrs") for lr in lrs)
    if len(values) < 3:
        raise ConfigError(f"a sweep needs at least three learning rates, got {list(values)}")
    if any(b <= a for a, b in pairwise(values)):
        raise ConfigError(f"lrs must be increasing and distinct, got {list(values)}")
    return values


def _settings(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: meta.get(k) for k in ("spec", "widths", "lrs", "seeds", "steps", "eval_batches")}


def sweep(
    spec: Spec | str,
    *,
    widths: Any = None,
    lrs: Any = None,
    steps: Any = None,
    seeds: Any = None,
    out: str | os.PathLike[str] | None = None,
    executor: str = "inline",
    workers: int | None = None,
    eval_batches: int = EVAL_BATCHES,
    device: str = "cpu",
    overwrite: bool = False,
    resume: bool = False,
) -> Path:
    """Train every (width, lr, seed) job of ``spec`` for ``steps`` steps and return the sweep directory.

    Unset grid settings come from the spec's ``DEFAULTS["sweep"]``, then from :data:`DEFAULTS`; ``out``
    defaults to ``runs/<spec>-<time>``.
    ``seeds``: a count N (seeds 0..N−1) or a list. With ``resume``, jobs whose shard exists are skipped
    (the settings must match the existing sweep's). Jobs that fail are re-raised after the others finish;
    the sweep is then marked ``incomplete``.
    """
    from coordscope.executors import execute
    from coordscope.run import default_out, versions

    spec = load_spec(spec)
    given = {"widths": widths, "lrs": lrs, "steps": steps, "seeds": seeds}
    defaults = {**DEFAULTS, **(spec.defaults.get("sweep") or {})}
    pick = {k: v if v is not None else defaults[k] for k, v in given.items()}
    widths, grid = check_widths(pick["widths"]), check_lrs(pick["lrs"])
    seed_list, steps = check_seeds(pick["seeds"]), check_steps(pick["steps"])
    if isinstance(eval_batches, bool) or not isinstance(eval_batches, int) or eval_batches < 1:
        raise ConfigError(f"eval_batches must be a positive integer, got {eval_batches!r}")
    if executor != "inline" and spec.ref == "<object>":
        raise ConfigError(f"executor {executor!r} needs a spec that workers can import: pass a file, module, "
                          "module:attr or sample name instead of a Spec object")
    run_dir = prepare_run_dir(default_out(spec) if out is None else local_dir(out), overwrite=overwrite,
                              resume=resume)
    name = run_dir.resolve().name
    settings = {"spec": spec.ref, "widths": list(widths), "lrs": list(grid), "seeds": list(seed_list),
                "steps": steps, "eval_batches": eval_batches}
    if resume:
        meta = read_meta(run_dir)
        if meta.get("kind") != KIND:
            raise ConfigError(f"cannot resume {str(run_dir)!r}: it is a {meta.get('kind')!r} run, not a sweep")
        for key, value in settings.items():
            if _settings(meta)[key] != value:
                raise ConfigError(f"cannot resume: the sweep has {key}={meta.get(key)!r}, this command asks "
                                  f"for {value!r}")
        remove_stale_temporaries(run_dir)
    else:
        seed_everything(0)
        optimizer = type(spec.make_optimizer(build_model(spec, widths[0]), grid[0])).__name__
        write_meta(run_dir, {
            "schema_version": SCHEMA_VERSION, "kind": KIND, "run": name, "description": spec.description,
            **settings, "optimizer": optimizer, "device": device, "dtype": "float32", "status": "running",
            "versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "jobs": [{"width": w, "lr": lr, "seed": s, "shard": shard_name(w, i, s)}
                     for w in widths for i, lr in enumerate(grid) for s in seed_list],
        })
    template = SweepJob(spec=spec if executor == "inline" else spec.ref, width=0, lr=0.0, lr_index=0, seed=0,
                        steps=steps, run_dir=str(run_dir), run=name, eval_batches=eval_batches, device=device)
    jobs = [replace(template, width=w, lr=lr, lr_index=i, seed=s)
            for w in widths for i, lr in enumerate(grid) for s in seed_list
            if not (resume and (run_dir / shard_name(w, i, s)).is_file())]
    # Widest first: the longest jobs start early, so workers do not idle at the end.
    jobs.sort(key=lambda j: -j.width)
    try:
        update_meta(run_dir, status="running")
        execute(train_job, jobs, executor=executor, workers=workers, desc=f"sweep {Path(spec.ref).name}")
    except BaseException as exc:
        update_meta(run_dir, status="incomplete", error=f"{type(exc).__name__}: {exc}".split("\n")[0])
        raise
    update_meta(run_dir, status="complete", error=None)
    return run_dir


def load_sweep(run_dir: str | os.PathLike[str]) -> pl.DataFrame:
    """Every row of a sweep's finished shards (:data:`SCHEMA`), checked to be a sweep."""
    run_dir = local_dir(run_dir)
    meta = read_meta(run_dir)
    if meta.get("kind") != KIND:
        raise StoreError(f"{run_dir}: a {meta.get('kind')!r} run, not an LR sweep (use coordscope check)")
    paths = shard_paths(run_dir)
    if not paths:
        raise StoreError(f"{run_dir}: no finished sweep jobs yet")
    try:
        frame = pl.read_parquet([str(p) for p in paths])
    except Exception as exc:
        raise StoreError(f"{run_dir}: cannot read shards ({type(exc).__name__}: {exc})") from exc
    missing = [c for c in SCHEMA.names if c not in frame.columns]
    if missing:
        raise StoreError(f"{run_dir}: not sweep shards (missing columns {', '.join(missing)})")
    return frame


def refine_optimum(log2_lrs: ArrayLike, losses: ArrayLike) -> tuple[float, bool]:
    """The log2 LR of lowest loss, refined by the vertex of the parabola through it and its neighbours.

    Non-finite losses (diverged jobs) count as +inf. Returns ``(opt, bracketed)``: ``bracketed`` is False
    when the minimum lies on the edge of the grid (then ``opt`` is that edge, unrefined) and ``opt`` is NaN
    when every loss is non-finite. The vertex is kept within the neighbours' span.
    """
    x = np.asarray(log2_lrs, dtype=float)
    y = np.asarray(losses, dtype=float)
    y = np.where(np.isfinite(y), y, np.inf)
    if not np.isfinite(y).any():
        return math.nan, False
    i = int(np.argmin(y))
    if i == 0 or i == len(y) - 1 or not np.isfinite(y[[i - 1, i + 1]]).all():
        return float(x[i]), 0 < i < len(y) - 1
    (x0, x1, x2), (y0, y1, y2) = x[i - 1 : i + 2], y[i - 1 : i + 2]
    # Vertex of the parabola through three points (Newton's divided differences).
    d01, d12 = (y1 - y0) / (x1 - x0), (y2 - y1) / (x2 - x1)
    curvature = (d12 - d01) / (x2 - x0)
    if curvature <= 0:
        return float(x1), True
    vertex = (x0 + x1) / 2 - d01 / (2 * curvature)
    return float(np.clip(vertex, x0, x2)), True


def fit_drift(log2_widths: ArrayLike, optima: ArrayLike) -> tuple[float, float]:
    """Least-squares slope of optimum against log2 width, and its standard error (NaN with < 3 points)."""
    x = np.asarray(log2_widths, dtype=float)
    y = np.asarray(optima, dtype=float)
    keep = np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(np.unique(x)) < 2:
        return math.nan, math.nan
    xc = x - x.mean()
    slope = float((xc * (y - y.mean())).sum() / (xc**2).sum())
    if len(x) < 3:
        return slope, math.nan
    residual = y - y.mean() - slope * xc
    stderr = float(math.sqrt((residual**2).sum() / (len(x) - 2) / (xc**2).sum()))
    return slope, stderr


def job_losses(frame: pl.DataFrame, metric: str = "heldout") -> pl.DataFrame:
    """One score per job (``width, seed, lr, loss, diverged``): its held-out loss, or with ``train`` the mean
    train loss of its last 10 % of steps. A diverged job scores +inf."""
    if metric not in METRICS:
        raise ConfigError(f"unknown sweep metric {metric!r} (choose from {', '.join(METRICS)})")
    keys = ["width", "seed", "lr"]
    if metric == "heldout":
        scores = frame.filter(pl.col("split") == "heldout").select(*keys, "loss", "diverged")
    else:
        train = frame.filter(pl.col("split") == "train")
        last = train.group_by(keys).agg(pl.col("step").max().alias("last"))
        window = (pl.col("last") + 1) // 10
        scores = (train.join(last, on=keys).filter(pl.col("step") >= pl.col("last") - window)
                  .group_by(keys).agg(pl.col("loss").mean(), pl.col("diverged").any()))
    return (scores.with_columns(pl.when(pl.col("diverged") | ~pl.col("loss").is_finite())
                                .then(math.inf).otherwise(pl.col("loss")).alias("loss"))
            .sort(keys))


@dataclass
class SweepReport:
    """What a sweep says about transfer: per-width optima, the drift, and the verdict.

    ``optima`` has one row per width: ``opt_log2_lr`` (mean over seeds of the refined optimum),
    ``spread`` (standard deviation over seeds; 0 with one seed), ``opt_min``/``opt_max`` over seeds,
    ``bracketed`` (every seed's minimum lies inside the grid), ``best_loss`` (lowest seed-mean loss on
    the grid), ``diverged`` (jobs) and ``jobs``.
    """

    run: str
    spec: str
    metric: str
    optima: pl.DataFrame
    drift: float
    drift_stderr: float
    tolerance: float
    wider_is_better: bool
    complete: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def transfers(self) -> bool:
        """The optimum moves by at most ``tolerance`` log2 units per doubling of width."""
        return math.isfinite(self.drift) and abs(self.drift) <= self.tolerance

    @property
    def verdict(self) -> str:
        return "transfers" if self.transfers else "does not transfer"

    @property
    def ok(self) -> bool:
        """The exit-code verdict: transfers, on a complete sweep."""
        return self.transfers and self.complete

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the fields above plus ``verdict`` and ``ok``; non-finite numbers become null."""
        def clean(value: Any) -> Any:
            return None if isinstance(value, float) and not math.isfinite(value) else value

        return {
            "ok": self.ok, "verdict": self.verdict, "complete": self.complete, "run": self.run,
            "spec": self.spec, "metric": self.metric, "drift": clean(self.drift),
            "drift_stderr": clean(self.drift_stderr), "tolerance": self.tolerance,
            "wider_is_better": self.wider_is_better, "warnings": list(self.warnings),
            "optima": [{k: clean(v) for k, v in row.items()} for row in self.optima.iter_rows(named=True)],
        }

    def render(self, fmt: str = "text") -> str:
        """``text`` (a table and the verdict) or ``json`` (:meth:`to_dict`)."""
        if fmt == "json":
            return json.dumps(self.to_dict(), indent=2) + "\n"
        if fmt != "text":
            raise ConfigError(f"unknown sweep format {fmt!r} (choose from text, json)")
        lines = [f"LR sweep {self.run}  spec {self.spec}  (optimum of the {self.metric} loss)",
                 f"{'width':>7}  {'opt log2 lr':>11}  {'spread':>6}  {'opt lr':>9}  {'best loss':>9}  diverged"]
        for row in self.optima.iter_rows(named=True):
            edge = "" if row["bracketed"] else "  (at grid edge)"
            lines.append(f"{row['width']:>7}  {row['opt_log2_lr']:>+11.2f}  {row['spread']:>6.2f}  "
                         f"{2.0 ** row['opt_log2_lr']:>9.2e}  {row['best_loss']:>9.4f}  "
                         f"{row['diverged']:>3}/{row['jobs']}{edge}")
        lines += [f"drift: {self.drift:+.2f} ± {self.drift_stderr:.2f} log2 lr per doubling of width "
                  f"(tolerance ±{self.tolerance:g})",
                  f"wider is better at the best lr: {'yes' if self.wider_is_better else 'no'}",
                  *(f"warning: {w}" for w in self.warnings),
                  f"verdict: {self.verdict.upper()}" + ("" if self.complete else " (incomplete sweep)")]
        return "\n".join(lines) + "\n"


def analyse_sweep(run_dir: str | os.PathLike[str], *, metric: str = "heldout",
                  tolerance: float = TOLERANCE) -> SweepReport:
    """Per-width optimal log2 LR (parabola-refined, spread over seeds), drift, wider-is-better, verdict."""
    tolerance = check_lr(tolerance, "tolerance")
    directory = local_dir(run_dir)
    meta = read_meta(directory)
    scores = job_losses(load_sweep(directory), metric).with_columns(pl.col("lr").log(2).alias("log2_lr"))
    per_seed = []
    for (width, seed), group in scores.group_by(["width", "seed"], maintain_order=True):
        opt, bracketed = refine_optimum(group["log2_lr"].to_list(), group["loss"].to_list())
        per_seed.append({"width": width, "seed": seed, "opt": opt, "bracketed": bracketed})
    seeds = pl.DataFrame(per_seed, schema={"width": pl.Int64, "seed": pl.Int64, "opt": pl.Float64,
                                           "bracketed": pl.Boolean})
    curves = scores.group_by(["width", "log2_lr"]).agg(pl.col("loss").mean())
    optima = (
        seeds.group_by("width").agg(
            pl.col("opt").filter(pl.col("opt").is_not_nan()).mean().alias("opt_log2_lr"),
            pl.col("opt").filter(pl.col("opt").is_not_nan()).std(ddof=1).fill_null(0.0).alias("spread"),
            pl.col("opt").filter(pl.col("opt").is_not_nan()).min().alias("opt_min"),
            pl.col("opt").filter(pl.col("opt").is_not_nan()).max().alias("opt_max"),
            pl.col("bracketed").all(),
        )
        .join(curves.group_by("width").agg(pl.col("loss").min().alias("best_loss")), on="width")
        .join(scores.group_by("width").agg(pl.col("loss").is_infinite().sum().cast(pl.Int64).alias("diverged"),
                                           pl.len().cast(pl.Int64).alias("jobs")), on="width")
        .with_columns(pl.col("opt_log2_lr", "opt_min", "opt_max").fill_null(math.nan))
        .sort("width")
    )
    drift, stderr = fit_drift(np.log2(seeds["width"].to_numpy()), seeds["opt"].to_numpy())
    best = optima["best_loss"].to_list()
    warnings = [f"width {w}: the lowest loss is at the edge of the lr grid; widen the grid"
                for w, b in zip(optima["width"], optima["bracketed"], strict=True) if not b]
    missing = missing_jobs(directory, meta)
    if missing:
        warnings.append(f"{len(missing)} of {len(meta.get('jobs', []))} jobs have no shard (killed or failed)")
    if not math.isfinite(drift):
        warnings.append("no drift: fewer than two widths have a finite optimum")
    return SweepReport(
        run=str(meta.get("run", directory.name)), spec=str(meta.get("spec", "?")), metric=metric, optima=optima,
        drift=drift, drift_stderr=stderr, tolerance=tolerance,
        wider_is_better=all(b1 <= b0 for b0, b1 in pairwise(best)),
        complete=not missing and meta.get("status") == "complete", warnings=warnings,
    )
