"""LR sweeps, the judging half: each width's optimal learning rate, how it drifts with width, the verdict.

:func:`analyse_sweep` finds, per width and seed, the learning rate of lowest loss on the log2 grid and
refines it with the vertex of the parabola through that point and its two neighbours. The *drift* is the
least-squares slope of the optimal log2 LR against log2 width — how many log2 units the optimum moves per
doubling of width. Under μP it is about 0; under SP with Adam the optimum falls roughly like 1/width. The
sweep transfers when ``|drift| <= tolerance``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import ArrayLike

from coordscope.choices import SWEEP_FORMATS, SWEEP_METRICS
from coordscope.config import Config, ConfigSource, load_config
from coordscope.errors import ConfigError, StoreError
from coordscope.lrsweep import KIND, SCHEMA
from coordscope.runmeta import read_meta
from coordscope.settings import check_lr
from coordscope.store import local_dir, missing_jobs, shard_paths

TOLERANCE = 0.25  # |drift| in log2 LR per doubling of width that still counts as "transfers"


def load_sweep(run_dir: str | os.PathLike[str]) -> pl.DataFrame:
    """Every row of a sweep's finished shards (:data:`SCHEMA`), checked to be a sweep."""
    run_dir = local_dir(run_dir)
    meta = read_meta(run_dir)
    if meta.kind != KIND:
        raise StoreError(f"{run_dir}: a {meta.kind!r} run, not an LR sweep (use coordscope check)")
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
    if metric not in SWEEP_METRICS:
        raise ConfigError(f"unknown sweep metric {metric!r} (choose from {', '.join(SWEEP_METRICS)})")
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

    @property
    def headline(self) -> str:
        """The verdict in one line — what the CLI, the HTML report, the dashboard and the demo all show."""
        text = (f"{self.verdict.upper()} · drift {self.drift:+.2f} ± {self.drift_stderr:.2f} log2 lr per doubling "
                f"of width (tolerance ±{self.tolerance:g})")
        return text + ("" if self.complete else " · INCOMPLETE sweep (some jobs missing)")

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
        if fmt not in SWEEP_FORMATS:
            raise ConfigError(f"unknown sweep format {fmt!r} (choose from {', '.join(SWEEP_FORMATS)})")
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


def analyse_sweep(run_dir: str | os.PathLike[str], *, metric: str | None = None, tolerance: float | None = None,
                  config: ConfigSource = None) -> SweepReport:
    """Per-width optimal log2 LR (parabola-refined, spread over seeds), drift, wider-is-better, verdict.

    ``metric`` (default ``heldout``) and ``tolerance`` (default 0.25) come from the arguments, else from
    ``[tool.coordscope.sweep]`` of ``config`` (None: the nearest pyproject.toml) — the same on every surface.
    """
    table = (config if isinstance(config, Config) else load_config(config)).sweep
    metric = str(next(v for v in (metric, table.get("metric"), "heldout") if v is not None))
    tolerance = check_lr(next(v for v in (tolerance, table.get("tolerance"), TOLERANCE) if v is not None),
                         "tolerance")
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
        warnings.append(f"{len(missing)} of {len(meta.jobs)} jobs have no shard (killed or failed)")
    if not math.isfinite(drift):
        warnings.append("no drift: fewer than two widths have a finite optimum")
    return SweepReport(
        run=meta.run, spec=meta.spec, metric=metric, optima=optima,
        drift=drift, drift_stderr=stderr, tolerance=tolerance,
        wider_is_better=all(b1 <= b0 for b0, b1 in pairwise(best)),
        complete=not missing and meta.status == "complete", warnings=warnings,
    )
