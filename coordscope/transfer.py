"""LR sweeps, the judging half: each width's optimal learning rate, how it moves with width, the verdict.

A depth sweep is judged the same way along depth, one judgement per fixed width (and along width per
fixed depth when widths vary too, :func:`judgements`): every statistic below reads "depth" for "width",
the drift being in log2 lr per doubling of depth (CompleteP, Dey et al. 2025: the optimum stays put).

:func:`analyse_sweep` finds, per width and seed, the learning rate of lowest loss on the log2 grid and
refines it with the vertex of the parabola through that point and its two neighbours. One straight line
through every width's optimum cannot tell "μP above a minimum width" from SP: under μP the optimum can
still move at small widths (a finite-width effect that dies out — TP5 states μTransfer for widths above
a minimum), under SP with Adam it keeps falling about one log2 unit per doubling. So the verdict is built
from the *per-doubling shifts* of the optimum between consecutive widths, each with a standard error that
counts the seeds' disagreement and how flat the loss is near the optimum:

* ``transfers`` — the optimum is stable within ``tolerance`` over every measured width;
* ``transfers from width`` N — stable within tolerance from width N on (N is :attr:`SweepReport.stable_from`);
* ``does not transfer`` — the optimum still moves significantly beyond tolerance at the widest widths
  and the shift does not die out;
* ``inconclusive`` — the data cannot decide: an optimum on the grid's edge, too few widths, a loss too
  flat (or seeds too scattered) to place the optimum within tolerance, or a shift that shrinks but has
  not yet reached tolerance at the widest width.

Each verdict comes with a one-line reason and a hint. The *transfer regret* says what the verdict costs:
each width's loss at the learning rate tuned on the proxy width (and on N), against its own best loss.
docs/transfer.md gives the statistics and their sources.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Sequence
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

TOLERANCE = 0.25  # |shift| in log2 LR per doubling of width (or depth) that still counts as "stable"
CONFIDENCE = 0.95  # one-sided tests at 5 %: "within tolerance" is an equivalence test (the 90 % interval
# lies inside ±tolerance, TOST), "beyond tolerance" a one-sided test that |drift| exceeds it
Z = 1.6448536269514722  # the normal quantile of CONFIDENCE
LOSS_RESOLUTION = 1e-3  # relative loss difference below which two learning rates are taken as equally good
OWN_NOISE_DOF = 4  # a width's own loss noise is used from 4 degrees of freedom on (3 seeds × 3 lrs); below,
# the estimate pooled over widths (2 seeds give 2 dof: a standard deviation known only to within a factor ~2)
MIN_WIDTHS = 3  # two widths give one shift: a finite-width effect cannot be told from a steady drift
MIN_TAIL = 3  # "stable from N on" needs N and at least two wider widths (two shifts, one residual)
REACH_DOUBLINGS = 2.0  # "converging" only when the shift's trend reaches tolerance within this many doublings
# past the widest width; a slower decline is indistinguishable from a drift that never dies out

VERDICTS = ("transfers", "transfers from width", "does not transfer", "inconclusive")
AXES = ("width", "depth")  # what a sweep's optimum can transfer across
RESCALE_HINTS = {  # what to check when the optimum keeps moving along an axis
    "width": "the learning rate must be rescaled with width: check the parametrization (coordscope check), e.g. "
             "SP with Adam moves the optimum about −1 per doubling",
    "depth": "the learning rate must be rescaled with depth: check the depth parametrization (coordscope check "
             "--depths), e.g. residual branches × L^-α with the hidden AdamW LR η·m_N⁻¹·m_L^(α−1) and "
             "LayerNorm's η·m_L^(α−1) (CompleteP, Dey et al. 2025, Table 1)",
}


def load_sweep(run_dir: str | os.PathLike[str]) -> pl.DataFrame:
    """Every row of a sweep's finished shards (:data:`SCHEMA`), checked to be a sweep; a depth sweep's rows
    carry a ``depth`` column too (a width sweep's, old ones included, have none)."""
    run_dir = local_dir(run_dir)
    meta = read_meta(run_dir)
    if meta.kind != KIND:
        raise StoreError(f"{run_dir}: a {meta.kind!r} run, not an LR sweep (use coordscope check)")
    paths = shard_paths(run_dir)
    if not paths:
        raise StoreError(f"{run_dir}: no finished sweep jobs yet")
    try:
        frame = pl.read_parquet([str(p) for p in paths], glob=False)
    except Exception as exc:
        raise StoreError(f"{run_dir}: cannot read shards ({type(exc).__name__}: {exc})") from exc
    missing = [c for c in SCHEMA.names if c not in frame.columns]
    if missing:
        raise StoreError(f"{run_dir}: not sweep shards (missing columns {', '.join(missing)})")
    return frame


def judgements(frame: pl.DataFrame) -> list[tuple[str, int | None]]:
    """The ``(axis, at)`` pairs a sweep's rows (:func:`load_sweep`) can be judged on, each axis at a fixed
    value of the other: across depth at every width when two or more depths were swept, across width at
    every depth (``at`` None in a width sweep) when two or more widths were. Holding the other axis fixed
    keeps each judgement about one axis: an optimum that moves with width would otherwise blur the depth
    fit, and the other way round."""
    widths = sorted(frame["width"].unique().to_list())
    depths = sorted(frame["depth"].unique().to_list()) if "depth" in frame.columns else []
    out: list[tuple[str, int | None]] = []
    if len(depths) > 1:
        out += [("depth", int(w)) for w in widths]
    if len(widths) > 1 or not out:
        out += [("width", int(d)) for d in depths] or [("width", None)]
    return out


def axis_rows(frame: pl.DataFrame, axis: str, at: int | None) -> pl.DataFrame:
    """The rows of one judgement (:func:`judgements`), the swept size in the ``width`` column: the judge
    reads sizes from there whichever axis they lie on (see :class:`SweepReport`)."""
    rows = frame.filter(pl.col("width" if axis == "depth" else "depth") == at) if at is not None else frame
    return rows.with_columns(pl.col("depth").alias("width")) if axis == "depth" else rows


def _bracket(x: np.ndarray, y: np.ndarray) -> int | None:
    """Index of the grid minimum when it has two finite neighbours (the parabola's three points), else None."""
    if not np.isfinite(y).any():
        return None
    i = int(np.argmin(y))
    if i == 0 or i == len(y) - 1 or not np.isfinite(y[[i - 1, i + 1]]).all():
        return None
    return i


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


def vertex_stderr(log2_lrs: ArrayLike, losses: ArrayLike, noise: float) -> tuple[float, float]:
    """How precisely the loss curve places its optimum: ``(stderr, curvature)``.

    ``stderr`` is the standard error of :func:`refine_optimum`'s vertex when every loss carries independent
    noise of standard deviation ``noise`` (first-order error propagation through the vertex formula); it
    grows as the curve flattens — the same loss noise moves the vertex of a flat parabola further.
    ``curvature`` is the parabola's c in ``loss ≈ a + c·(log2 lr − opt)²``. Both are NaN when the minimum
    is not bracketed; ``stderr`` is inf when the three losses are equal (no curvature at all).
    """
    x = np.asarray(log2_lrs, dtype=float)
    y = np.asarray(losses, dtype=float)
    y = np.where(np.isfinite(y), y, np.inf)
    i = _bracket(x, y)
    if i is None:
        return math.nan, math.nan
    (x0, x1, x2), (y0, y1, y2) = x[i - 1 : i + 2], y[i - 1 : i + 2]
    h0, h1, span = x1 - x0, x2 - x1, x2 - x0
    d01, d12 = (y1 - y0) / h0, (y2 - y1) / h1
    c = (d12 - d01) / span
    if c <= 0:
        return math.inf, 0.0
    # vertex = (x0 + x1)/2 − d01 / (2c); its gradient with respect to (y0, y1, y2):
    g_d01 = np.array([-1 / h0, 1 / h0, 0.0])
    g_c = (np.array([0.0, -1 / h1, 1 / h1]) - g_d01) / span
    gradient = -g_d01 / (2 * c) + d01 * g_c / (2 * c**2)
    return float(abs(noise) * np.sqrt((gradient**2).sum())), float(c)


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch–Carlson derivatives at the knots: zero at a local extremum, a weighted harmonic mean of the
    neighbouring secants elsewhere, so the interpolant never overshoots the data (no dip below the grid
    minimum, unlike a parabola through an asymmetric curve)."""
    h = np.diff(x)
    delta = np.diff(y) / h
    d = np.zeros_like(y)
    if len(x) == 2:
        return np.full_like(y, delta[0])
    for k in range(1, len(x) - 1):
        if delta[k - 1] * delta[k] > 0:
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])
    for end, (h0, h1, d0, d1) in ((0, (h[0], h[1], delta[0], delta[1])), (-1, (h[-1], h[-2], delta[-1], delta[-2]))):
        value = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
        if np.sign(value) != np.sign(d0):
            value = 0.0
        elif np.sign(d0) != np.sign(d1) and abs(value) > 3 * abs(d0):
            value = 3 * d0
        d[end] = value
    return d


def loss_at(log2_lrs: ArrayLike, losses: ArrayLike, x: float) -> float:
    """The loss curve read at log2 lr ``x`` between grid points: a monotone piecewise-cubic (PCHIP) through
    the finite grid points around ``x``, which never dips below the measured losses it joins. inf when a
    grid point next to ``x`` diverged; NaN outside the grid."""
    gx = np.asarray(log2_lrs, dtype=float)
    gy = np.asarray(losses, dtype=float)
    if not math.isfinite(x) or x < gx[0] - 1e-9 or x > gx[-1] + 1e-9:
        return math.nan
    exact = np.flatnonzero(np.abs(gx - x) < 1e-9)
    if exact.size:
        value = gy[exact[0]]
        return float(value) if math.isfinite(value) else math.inf
    k = int(np.searchsorted(gx, x))  # gx[k-1] < x < gx[k]
    if not (math.isfinite(gy[k - 1]) and math.isfinite(gy[k])):
        return math.inf
    lo, hi = k - 1, k  # the run of finite points around x
    while lo > 0 and math.isfinite(gy[lo - 1]):
        lo -= 1
    while hi < len(gx) - 1 and math.isfinite(gy[hi + 1]):
        hi += 1
    px, py = gx[lo : hi + 1], gy[lo : hi + 1]
    d = _pchip_slopes(px, py)
    i = k - 1 - lo
    h = px[i + 1] - px[i]
    t = (x - px[i]) / h
    h00, h10, h01, h11 = 2 * t**3 - 3 * t**2 + 1, t**3 - 2 * t**2 + t, -2 * t**3 + 3 * t**2, t**3 - t**2
    return float(h00 * py[i] + h10 * h * d[i] + h01 * py[i + 1] + h11 * h * d[i + 1])


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


@functools.lru_cache(maxsize=64)
def student_t_quantile(p: float, dof: int) -> float:
    """The ``p`` quantile of Student's t with ``dof`` degrees of freedom (numerically; numpy only); inf with
    no degrees of freedom."""
    if dof < 1:
        return math.inf
    log_norm = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)

    def cdf(t: float) -> float:
        x = np.linspace(0.0, t, 4001)
        density = np.exp(log_norm - (dof + 1) / 2 * np.log1p(x**2 / dof))
        return 0.5 + float(np.sum((density[1:] + density[:-1]) / 2 * np.diff(x)))

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class LineFit:
    """A weighted straight line ``y = intercept + slope·(x − center)``, and how sure its slope is.

    ``scatter`` = √(χ²/dof) says how much the points scatter around the line relative to their standard
    errors (NaN without residual degrees of freedom). When those errors are *measured* (every width has
    two or more seeds) they are trusted: ``stderr`` comes from them and ``k``, the multiplier of ``stderr``
    for one-sided tests at :data:`CONFIDENCE`, is the normal quantile — a path that bends (an optimum
    settling) is not noise, and single shifts that jump are caught separately. When they are not (one
    seed: they know only the loss resolution), the residuals estimate the noise: ``stderr`` is multiplied by
    max(1, ``scatter``) and ``k`` is Student's t quantile for ``dof`` degrees of freedom (inf with none),
    so three widths and one seed can hardly ever decide.
    """

    slope: float
    stderr: float
    intercept: float
    center: float
    scatter: float
    dof: int
    k: float = Z
    measured: bool = True


def fit_line(x: ArrayLike, y: ArrayLike, stderr: ArrayLike, measured: bool = True) -> LineFit:
    """Weighted least squares of ``y`` on ``x`` with weights 1/stderr² (see :class:`LineFit`; ``measured``:
    whether ``stderr`` was measured from seeds or is only a floor)."""
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    se = np.maximum(np.asarray(stderr, dtype=float), 1e-9)
    keep = np.isfinite(xs) & np.isfinite(ys) & np.isfinite(se)
    xs, ys, se = xs[keep], ys[keep], se[keep]
    if len(np.unique(xs)) < 2:
        return LineFit(math.nan, math.nan, math.nan, math.nan, math.nan, 0, measured=measured)
    w = 1 / se**2
    center = float((w * xs).sum() / w.sum())
    xc = xs - center
    sxx = float((w * xc**2).sum())
    intercept = float((w * ys).sum() / w.sum())
    slope = float((w * xc * (ys - intercept)).sum() / sxx)
    dof = len(xs) - 2
    scatter = math.sqrt(float((w * (ys - intercept - slope * xc) ** 2).sum()) / dof) if dof > 0 else math.nan
    stderr_slope, k = math.sqrt(1 / sxx), Z
    if not measured:
        k = student_t_quantile(CONFIDENCE, dof)
        stderr_slope *= max(1.0, scatter) if dof > 0 else 1.0
    return LineFit(slope, stderr_slope, intercept, center, scatter, dof, k, measured)


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


# --- per-width optima, per-doubling shifts, their trend, the stable tail ---------------------------------

def _width_blocks(scores: pl.DataFrame) -> dict[int, tuple[np.ndarray, np.ndarray, list[int]]]:
    """Per width: the log2 lr grid, the seeds × lrs block of scores (NaN where a job is missing, inf where
    it diverged) and the seeds of its rows."""
    out = {}
    frame = scores.with_columns(pl.col("lr").log(2).alias("log2_lr")).sort("width", "seed", "lr")
    for (width,), group in frame.group_by(["width"], maintain_order=True):
        table = group.pivot(on="log2_lr", index="seed", values="loss", aggregate_function="mean")
        names = [c for c in table.columns if c != "seed"]
        order = np.argsort([float(c) for c in names])
        x = np.array([float(names[i]) for i in order])
        block = table.select([names[i] for i in order]).to_numpy().astype(float)
        out[int(width)] = (x, block, table["seed"].to_list())
    return out


def _curve(block: np.ndarray) -> np.ndarray:
    """The seed-mean loss per learning rate over the jobs that exist: inf where one diverged, or none exist."""
    finite_or_inf = np.where(np.isnan(block), 0.0, block)
    counts = (~np.isnan(block)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = finite_or_inf.sum(axis=0) / counts
    return np.where((counts > 0) & ~np.isnan(mean), mean, np.inf)


def _interaction(losses: np.ndarray) -> tuple[float, int]:
    """Sum of squares and degrees of freedom of the seed × lr interaction of a seeds × lrs block of losses.

    Each seed's own offset (one seed's whole curve lower than another's) and each lr's mean are removed
    first: an offset cannot move the optimum, only a change of the curve's shape from seed to seed can."""
    block = losses[np.isfinite(losses).all(axis=1)]
    if block.shape[0] < 2 or block.shape[1] < 2:
        return 0.0, 0
    residual = block - block.mean(axis=1, keepdims=True) - block.mean(axis=0, keepdims=True) + block.mean()
    return float((residual**2).sum()), (block.shape[0] - 1) * (block.shape[1] - 1)


def width_optima(scores: pl.DataFrame) -> pl.DataFrame:
    """One row per width from :func:`job_losses` scores: the optimum and how precisely it is known.

    ``opt_log2_lr`` is the mean over seeds of each seed's refined optimum; ``spread`` their standard
    deviation (0 with one seed), ``opt_min``/``opt_max`` their range; ``seed_se`` = spread/√seeds (NaN with
    one seed: unmeasured). ``flat_se`` is :func:`vertex_stderr` of the seed-mean curve with ``loss_se`` as
    the noise of its losses: the seed × lr interaction of the losses at the three learning rates around the
    width's optimum (its own from :data:`OWN_NOISE_DOF` degrees of freedom on, else pooled over widths),
    over √seeds — never less than :data:`LOSS_RESOLUTION` × the best loss (the only noise known with one
    seed). ``opt_se`` = max(seed_se, flat_se): two estimates of the
    same uncertainty, one from the seeds' optima, one from the curve's flatness; the larger is kept so that
    neither two seeds agreeing by luck nor a sharp-looking curve hides the other. ``curvature`` is the
    seed-mean curve's c in loss ≈ a + c·(x − opt)². ``bracketed``: every seed's minimum, and the seed-mean
    curve's, lies inside the grid; ``best_loss`` the lowest seed-mean loss on the grid; ``diverged`` and
    ``jobs`` count jobs.
    """
    found = []
    sum_sq, dof = 0.0, 0
    for width, (x, block, _) in _width_blocks(scores).items():
        per_seed = []
        bracketed = True
        for row in block:
            present = ~np.isnan(row)
            opt, inside = refine_optimum(x[present], row[present])
            bracketed &= inside
            if math.isfinite(opt):
                per_seed.append(opt)
        mean = _curve(block)
        i = _bracket(x, mean)
        ss, df = _interaction(block[:, i - 1 : i + 2]) if i is not None else (0.0, 0)
        sum_sq, dof = sum_sq + ss, dof + df
        found.append((width, per_seed, bracketed and i is not None, x, mean, block.shape[0], block, ss, df))
    pooled = math.sqrt(sum_sq / dof) if dof else math.nan
    rows = []
    for width, per_seed, bracketed, x, mean, seeds, block, ss, df in found:
        best = float(mean.min()) if np.isfinite(mean).any() else math.nan
        floor = LOSS_RESOLUTION * abs(best) if math.isfinite(best) else math.nan
        noise = math.sqrt(ss / df) if df >= OWN_NOISE_DOF else pooled
        loss_se = max(noise / math.sqrt(seeds), floor) if math.isfinite(noise) else floor
        flat_se, curvature = vertex_stderr(x, mean, loss_se)
        n = len(per_seed)
        spread = float(np.std(per_seed, ddof=1)) if n > 1 else 0.0
        seed_se = spread / math.sqrt(n) if n > 1 else math.nan
        opt_se = max(v for v in (seed_se, flat_se) if not math.isnan(v)) if not math.isnan(flat_se) else math.nan
        rows.append({
            "width": width, "opt_log2_lr": float(np.mean(per_seed)) if per_seed else math.nan,
            "opt_se": opt_se, "spread": spread, "opt_min": min(per_seed, default=math.nan),
            "opt_max": max(per_seed, default=math.nan), "seed_se": seed_se, "flat_se": flat_se,
            "loss_se": loss_se, "curvature": curvature, "bracketed": bracketed and n > 0, "best_loss": best,
            "diverged": int(np.isinf(block).sum()), "jobs": int((~np.isnan(block)).sum()),
        })
    return pl.DataFrame(rows, schema={
        "width": pl.Int64, "opt_log2_lr": pl.Float64, "opt_se": pl.Float64, "spread": pl.Float64,
        "opt_min": pl.Float64, "opt_max": pl.Float64, "seed_se": pl.Float64, "flat_se": pl.Float64,
        "loss_se": pl.Float64, "curvature": pl.Float64, "bracketed": pl.Boolean, "best_loss": pl.Float64,
        "diverged": pl.Int64, "jobs": pl.Int64})


def doubling_shifts(optima: pl.DataFrame, tolerance: float = TOLERANCE, z: float = Z) -> pl.DataFrame:
    """How far the optimum moves between consecutive widths, per doubling of width.

    One row per pair: ``width_lo``, ``width_hi``, ``mid_width`` (their geometric mean, where the shift is
    drawn), ``shift`` = Δopt / Δlog2(width) and ``shift_se`` from the two optima's ``opt_se`` (independent
    jobs), ``shift_ci`` = z·se (the half-width of the 90 % interval the figures draw). ``status``: ``within``
    when |shift| + z·se ≤ tolerance, ``beyond`` when |shift| − z·se >
    tolerance, ``unresolved`` in between (the two optima are not placed well enough to tell).
    """
    rows = []
    widths, opts, ses = optima["width"].to_list(), optima["opt_log2_lr"].to_list(), optima["opt_se"].to_list()
    for (w0, o0, s0), (w1, o1, s1) in pairwise(zip(widths, opts, ses, strict=True)):
        step = math.log2(w1 / w0)
        shift = (o1 - o0) / step
        se = math.hypot(s0, s1) / step
        if not (math.isfinite(shift) and math.isfinite(se)):
            status = "unresolved"
        elif abs(shift) + z * se <= tolerance:
            status = "within"
        elif abs(shift) - z * se > tolerance:
            status = "beyond"
        else:
            status = "unresolved"
        rows.append({"width_lo": w0, "width_hi": w1, "mid_width": math.sqrt(w0 * w1), "shift": shift,
                     "shift_se": se, "shift_ci": z * se, "status": status})
    return pl.DataFrame(rows, schema={"width_lo": pl.Int64, "width_hi": pl.Int64, "mid_width": pl.Float64,
                                      "shift": pl.Float64, "shift_se": pl.Float64, "shift_ci": pl.Float64,
                                      "status": pl.String})


@dataclass(frozen=True)
class ShiftTrend:
    """Whether the per-doubling shift dies out with width (μP above a minimum width) or not (SP).

    ``slope``: the change of the shift's magnitude per doubling of width (the shift taken with the sign of
    the overall movement, so a shift that shrinks through zero counts as shrinking), ± ``stderr``.
    ``reach_width``: where the fitted line brings the shift within tolerance (NaN when it does not shrink,
    or every shift already is within).
    ``shape``: ``stable`` (every shift within tolerance), ``converging`` (the magnitude falls significantly
    and reaches tolerance at most :data:`REACH_DOUBLINGS` doublings past the widest width), ``constant``
    (it does not die out within reach: steady, growing, or falling too slowly to tell from a steady drift),
    ``unknown`` (fewer than two shifts).
    """

    shape: str
    slope: float
    stderr: float
    reach_width: float


def shift_trend(shifts: pl.DataFrame, tolerance: float = TOLERANCE, measured: bool = True) -> ShiftTrend:
    """Fit the per-doubling shifts against log2 width (:class:`ShiftTrend`)."""
    usable = shifts.filter(pl.col("shift").is_finite() & pl.col("shift_se").is_finite())
    if usable.height < 2:
        return ShiftTrend("unknown", math.nan, math.nan, math.nan)
    s = usable["shift"].to_numpy()
    t = np.log2(usable["mid_width"].to_numpy())
    weights = 1 / np.maximum(usable["shift_se"].to_numpy(), 1e-9) ** 2
    direction = 1.0 if (weights * s).sum() >= 0 else -1.0
    fit = fit_line(t, direction * s, usable["shift_se"].to_numpy(), measured)
    reach = math.nan
    if fit.slope < 0:
        reach = 2.0 ** (fit.center + (tolerance - fit.intercept) / fit.slope)
    if bool((np.abs(s) <= tolerance).all()):
        shape, reach = "stable", math.nan
    elif (fit.slope + fit.k * fit.stderr < 0 and math.isfinite(reach)
          and math.log2(reach) <= math.log2(float(usable["width_hi"].to_numpy().max())) + REACH_DOUBLINGS):
        shape = "converging"
    else:
        shape = "constant"
    return ShiftTrend(shape, fit.slope, fit.stderr, reach)


@dataclass(frozen=True)
class Tail:
    """The widths from ``from_width`` on, fitted by one line (:func:`fit_line`): their drift ± stderr per
    doubling and the test multiplier ``k``; ``jump``: a single shift inside is significantly beyond
    tolerance (|shift| > tolerance + k·se, se inflated like the drift's when not ``measured``); ``holds``:
    no jump, and the drift within tolerance by an equivalence test (|drift| + k·stderr ≤ tolerance);
    ``beyond``: the optimum surely still moves here (|drift| − k·stderr > tolerance)."""

    from_width: int
    widths: int
    drift: float
    stderr: float
    scatter: float
    k: float
    measured: bool
    jump: bool
    holds: bool
    beyond: bool


def tails(optima: pl.DataFrame, shifts: pl.DataFrame, tolerance: float = TOLERANCE,
          min_tail: int = MIN_TAIL) -> list[Tail]:
    """Every tail of at least ``min_tail`` widths, smallest ``from_width`` first (:class:`Tail`)."""
    out = []
    widths = optima["width"].to_list()
    for j in range(len(widths) - min_tail + 1):
        part = optima[j:]
        fit = fit_line(np.log2(part["width"].to_numpy()), part["opt_log2_lr"].to_numpy(), part["opt_se"].to_numpy(),
                       measured=bool(part["seed_se"].is_finite().all()))
        inner = shifts[j:]
        inflate = max(1.0, fit.scatter) if not fit.measured and math.isfinite(fit.scatter) else 1.0
        jump = any(abs(s) > tolerance + fit.k * se * inflate
                   for s, se in zip(inner["shift"], inner["shift_se"], strict=True))
        ok = math.isfinite(fit.slope) and math.isfinite(fit.stderr)
        out.append(Tail(from_width=widths[j], widths=part.height, drift=fit.slope, stderr=fit.stderr,
                        scatter=fit.scatter, k=fit.k, measured=fit.measured, jump=jump,
                        holds=ok and abs(fit.slope) + fit.k * fit.stderr <= tolerance and not jump,
                        beyond=ok and abs(fit.slope) - fit.k * fit.stderr > tolerance))
    return out


BOOTSTRAP = 200  # resamples of the seeds for the regret's standard error (fixed random seed: reproducible)


def transfer_regret(scores: pl.DataFrame, optima: pl.DataFrame, sources: Sequence[tuple[str, int]]) -> pl.DataFrame:
    """What transferring costs: each width's loss at a learning rate tuned at another width.

    For each ``(label, source_width)`` and each width: ``log2_lr`` = the source width's optimum,
    ``loss`` = the width's seed-mean loss curve read there (:func:`loss_at`, which never dips below the
    measured losses), ``best_loss`` = the width's lowest seed-mean loss on the grid, ``regret`` = their
    difference (≥ 0; inf when the transferred lr sits next to a diverged job, NaN outside the grid) and
    ``regret_rel`` = regret / best_loss. At the source width itself the regret is only the distance between
    its refined optimum and its best grid point: the sweep's resolution.

    ``regret_se`` is the largest of: a bootstrap over seeds (the source's seeds resampled for its optimum,
    the width's for its curve, so that the two readings of one curve stay paired), the regret's range over
    the source optimum ± its ``opt_se`` (which knows the loss's flatness, and is all there is with one
    seed), and √2 × the loss resolution floor. ``regret_rel_se`` is the same relative to the best loss.
    """
    blocks = _width_blocks(scores)
    info = {int(r["width"]): r for r in optima.iter_rows(named=True)}
    seed_optima = {w: np.array([o for o in (refine_optimum(x[~np.isnan(r)], r[~np.isnan(r)])[0] for r in block)
                                if math.isfinite(o)]) for w, (x, block, _) in blocks.items()}
    rng = np.random.default_rng(0)
    rows = []
    for label, source in sources:
        x_src, se_src, src = info[source]["opt_log2_lr"], info[source]["opt_se"], seed_optima[source]
        for width, (gx, block, _) in blocks.items():
            curve, best = _curve(block), info[width]["best_loss"]

            def cost(x: float, curve: np.ndarray = curve, gx: np.ndarray = gx, best: float = best) -> float:
                value = loss_at(gx, curve, x) - best
                return max(0.0, value) if math.isfinite(value) else value

            regret = cost(x_src)
            spreads = [math.sqrt(2) * LOSS_RESOLUTION * best]
            if math.isfinite(regret) and math.isfinite(se_src):
                around = [cost(x_src - se_src), regret, cost(x_src + se_src)]
                spreads.append((max(around) - min(around)) / 2 if all(map(math.isfinite, around)) else math.inf)
            n = min(len(src), block.shape[0])
            if math.isfinite(regret) and n >= 2:
                draws = []
                for _ in range(BOOTSTRAP):
                    x_b = float(src[rng.integers(0, len(src), len(src))].mean())
                    curve_b = _curve(block[rng.integers(0, block.shape[0], block.shape[0])])
                    if np.isfinite(curve_b).any():
                        value = loss_at(gx, curve_b, x_b) - float(curve_b[np.isfinite(curve_b)].min())
                        draws.append(max(0.0, value) if math.isfinite(value) else value)
                finite = [d for d in draws if math.isfinite(d)]
                if len(finite) > 1:
                    spreads.append(float(np.std(finite, ddof=1)) * math.sqrt(n / (n - 1)))
            se = max(spreads)
            rows.append({"source": label, "source_width": source, "width": width, "log2_lr": x_src,
                         "loss": loss_at(gx, curve, x_src), "best_loss": best, "regret": regret,
                         "regret_rel": regret / best if best else math.nan, "regret_se": se,
                         "regret_rel_se": se / best if best else math.nan})
    return pl.DataFrame(rows, schema={
        "source": pl.String, "source_width": pl.Int64, "width": pl.Int64, "log2_lr": pl.Float64,
        "loss": pl.Float64, "best_loss": pl.Float64, "regret": pl.Float64, "regret_rel": pl.Float64,
        "regret_se": pl.Float64, "regret_rel_se": pl.Float64})


# --- the verdict ---------------------------------------------------------------------------------------

def _shift_list(shifts: pl.DataFrame) -> str:
    return ", ".join(f"{s:+.2f}" for s in shifts["shift"])


def _pct(value: float) -> str:
    """A relative regret as a percentage; an infinite one means the transferred lr diverged."""
    if value == math.inf:
        return "diverged"
    return "n/a" if not math.isfinite(value) else f"{100 * value:+.2f} %"


def _judge(optima: pl.DataFrame, shifts: pl.DataFrame, trend: ShiftTrend, tail_fits: list[Tail],
           tolerance: float, grid: tuple[float, float], axis: str = "width") -> tuple[str, int | None, str, str]:
    """``(verdict, stable_from, reason, hint)`` from the measurements alone (see the module docstring);
    ``axis`` names what the sizes are (``width`` or ``depth``) in the reason and the hint."""
    a = axis
    widths = optima["width"].to_list()
    unplaced = optima.filter(~pl.col("opt_log2_lr").is_finite())
    if unplaced.height:
        w = unplaced["width"][0]
        return ("inconclusive", None, f"every job of {a} {w} diverged, so its optimum is unknown",
                "add smaller learning rates to the grid")
    edges = optima.filter(~pl.col("bracketed"))
    if edges.height:
        row = edges.row(0, named=True)
        listed = ", ".join(str(w) for w in edges["width"])
        if row["opt_max"] >= grid[1] - 1e-9 or row["opt_min"] <= grid[0] + 1e-9:
            side = "largest" if row["opt_max"] >= grid[1] - 1e-9 else "smallest"
            return ("inconclusive", None,
                    f"the lowest loss of {a} {listed} is at the edge of the lr grid (its {side} lr, "
                    f"2^{row['opt_max' if side == 'largest' else 'opt_min']:.2f}), so the optimum is not placed",
                    f"widen the lr grid toward {'larger' if side == 'largest' else 'smaller'} learning rates")
        return ("inconclusive", None,
                f"the lowest mean loss of {a} {listed} sits next to a diverged job, so the optimum is not "
                "placed", "add learning rates just below the one that diverged, or seeds")
    if len(widths) < MIN_WIDTHS:
        return ("inconclusive", None,
                f"only {len(widths)} {a}(s): one shift ({_shift_list(shifts) or 'none'}) cannot tell a "
                f"finite-{a} effect from a steady drift",
                f"add {a}s (at least {MIN_WIDTHS}, e.g. doublings beyond {widths[-1]})")
    holding = [t for t in tail_fits if t.holds]
    if holding:
        tail = holding[0]
        where = f"{a}s {tail.from_width}–{widths[-1]}"
        if tail.from_width == widths[0]:
            return ("transfers", tail.from_width,
                    f"the optimum stays within ±{tolerance:g} log2 lr per doubling over {where} "
                    f"(drift {tail.drift:+.2f} ± {tail.stderr:.2f}; shifts {_shift_list(shifts)})",
                    f"tune the learning rate at any {a} from {tail.from_width} on and reuse it; the regret "
                    f"says what that costs at each {a}")
        before = shifts.filter(pl.col("width_hi") <= tail.from_width)
        return ("transfers from width", tail.from_width,
                f"the shift per doubling {'dies out' if trend.shape == 'converging' else 'settles'} "
                f"({_shift_list(shifts)}): stable within ±{tolerance:g} over {where} (drift {tail.drift:+.2f} ± "
                f"{tail.stderr:.2f}), moving below ({_shift_list(before)})",
                f"tune the learning rate at {a} {tail.from_width} or {'wider' if a == 'width' else 'deeper'}; "
                f"a smaller proxy is in the finite-{a} regime")
    widest = tail_fits[-1]
    where = f"{a}s {widest.from_width}–{widths[-1]}"
    if widest.beyond:
        if trend.shape == "converging":
            reach = (f"the fitted shift reaches ±{tolerance:g} near {a} {trend.reach_width:.0f}"
                     if trend.reach_width > widths[-1] else "to confirm that the shift has died out")
            return ("inconclusive", None,
                    f"the shift per doubling shrinks ({_shift_list(shifts)}) but the optimum still moves "
                    f"{widest.drift:+.2f} ± {widest.stderr:.2f} per doubling over {where}",
                    f"add {'wider widths' if a == 'width' else 'deeper depths'} ({reach})")
        slowly = (f"; at its rate of decline it would reach ±{tolerance:g} only near {a} {trend.reach_width:.0f}"
                  if math.isfinite(trend.reach_width) else "")
        return ("does not transfer", None,
                f"the optimum keeps moving {widest.drift:+.2f} ± {widest.stderr:.2f} log2 lr per doubling over "
                f"{where} and the shift does not die out ({_shift_list(shifts)}){slowly}",
                RESCALE_HINTS[a])
    # Neither surely stable nor surely moving: name what blurs the optima most.
    part = optima.filter(pl.col("width") >= widest.from_width)
    flat = float(np.nan_to_num(part["flat_se"].to_numpy(), nan=0.0).max())
    seed = float(np.nan_to_num(part["seed_se"].to_numpy(), nan=0.0).max())
    if not widest.measured:
        why = (f"with one seed the optima's noise is known only from their scatter around a line "
               f"({widest.widths - 2} degree(s) of freedom): the drift over {where}, {widest.drift:+.2f} ± "
               f"{widest.stderr:.2f} (× {widest.k:.1f}, Student's t), cannot be placed within ±{tolerance:g}")
    elif flat >= seed:
        why = (f"the loss is too flat near the optimum to place it within ±{tolerance:g}: the optimum is known "
               f"only to ±{flat:.2f} log2 lr (drift {widest.drift:+.2f} ± {widest.stderr:.2f} over {where})")
    else:
        why = (f"the seeds disagree on the optimum by ±{seed:.2f} log2 lr, too much to place the drift "
               f"({widest.drift:+.2f} ± {widest.stderr:.2f} over {where}) within ±{tolerance:g}")
    return ("inconclusive", None, why,
            "add seeds (or more steps, or a finer lr grid near the optimum) so that each optimum is placed "
            f"to well within ±{tolerance / Z:.2g} log2 lr")


@dataclass
class SweepReport:
    """What a sweep says about transfer: per-width optima, per-doubling shifts, their trend, the stable
    tail, the transfer regret and the verdict.

    ``optima`` has one row per width (:func:`width_optima`). ``shifts`` one per pair of consecutive widths
    (:func:`doubling_shifts`); ``trend`` their :class:`ShiftTrend`; ``tails`` every :class:`Tail` tested.
    ``stable_from`` is N — the smallest width from which the optimum is stable within tolerance (None when
    there is none). ``regret`` (:func:`transfer_regret`) holds each width's loss at the learning rate of the
    proxy width (``source`` = ``proxy``) and of N (``source`` = ``stable_from``). ``drift`` ± ``drift_stderr``
    is the least-squares slope of every seed's optimum against log2 width over all widths, kept for
    comparison: it is not the verdict. ``verdict`` is one of :data:`VERDICTS`; ``reason`` and ``hint`` say
    why, and what to do.

    ``axis`` says what the sizes are: ``width`` (μTransfer), or ``depth`` — then every "width" above (the
    tables' ``width`` columns, ``stable_from``, ``proxy_width``) is a depth, the judgement made at the one
    width ``at``. A width judgement of a depth sweep is made at the one depth ``at`` (None: no depth swept).
    The column names stay those of the width sweep, so that every reader of a report reads either.
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
    shifts: pl.DataFrame = field(default_factory=pl.DataFrame)
    trend: ShiftTrend = field(default_factory=lambda: ShiftTrend("unknown", math.nan, math.nan, math.nan))
    tails: list[Tail] = field(default_factory=list)
    stable_from: int | None = None
    proxy_width: int | None = None
    fail_above_proxy: bool = False
    regret: pl.DataFrame = field(default_factory=pl.DataFrame)
    verdict: str = "inconclusive"
    reason: str = ""
    hint: str = ""
    axis: str = "width"
    at: int | None = None

    @property
    def where(self) -> str:
        """Where the other axis is held, for titles: ``at width 64``, ``at depth 4``, or nothing."""
        if self.at is None:
            return ""
        return f" at {'width' if self.axis == 'depth' else 'depth'} {self.at}"

    @property
    def transfers(self) -> bool:
        """The optimum is stable within tolerance, over every width or from width N on."""
        return self.verdict in ("transfers", "transfers from width")

    @property
    def above_proxy(self) -> bool:
        """N lies above the proxy width: the proxy is too small for its tuned lr to transfer."""
        return (self.stable_from is not None and self.proxy_width is not None
                and self.stable_from > self.proxy_width)

    @property
    def ok(self) -> bool:
        """The exit-code verdict: transfers (from N on, unless ``fail_above_proxy`` and N > the proxy
        width), on a complete sweep."""
        return self.transfers and self.complete and not (self.fail_above_proxy and self.above_proxy)

    @property
    def label(self) -> str:
        """The verdict as shown: ``TRANSFERS FROM WIDTH 256`` rather than the category."""
        if self.verdict == "transfers from width":
            return f"TRANSFERS FROM {self.axis.upper()} {self.stable_from}"
        return self.verdict.upper()

    def proxy_regret(self, source: str = "proxy") -> dict[str, Any] | None:
        """The row of the widest width's regret from ``source`` (``proxy`` or ``stable_from``), if any."""
        if self.regret.is_empty():
            return None
        rows = self.regret.filter(pl.col("source") == source).sort("width")
        return rows.row(rows.height - 1, named=True) if rows.height else None

    @property
    def headline(self) -> str:
        """The verdict in one line — what the CLI, the HTML report, the dashboard and the demo all show."""
        a = self.axis
        text = f"{self.label} · {self.reason}" if a == "width" and self.at is None else \
            f"{self.label} across {a}{self.where} · {self.reason}"
        if self.above_proxy:
            text += (f" · the proxy {a} {self.proxy_width} is below {self.stable_from}"
                     + (" (fails: --fail-above-proxy)" if self.fail_above_proxy else ""))
        row = self.proxy_regret()
        if row is not None and row["width"] != self.proxy_width and not math.isnan(row["regret_rel"]):
            text += (f" · regret of the {a}-{self.proxy_width} lr at {a} {row['width']}: "
                     f"{_pct(row['regret_rel'])}")
        return text + ("" if self.complete else " · INCOMPLETE sweep (some jobs missing)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field above plus ``verdict``, ``ok`` and ``headline``; non-finite numbers become
        null (a diverged transferred lr's infinite regret too: ``regret_diverged`` says so)."""
        def clean(value: Any) -> Any:
            return None if isinstance(value, float) and not math.isfinite(value) else value

        def rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
            return [{k: clean(v) for k, v in row.items()} for row in frame.iter_rows(named=True)]

        regret = rows(self.regret)
        for row, raw in zip(regret, self.regret.iter_rows(named=True), strict=True):
            row["regret_diverged"] = raw["regret"] == math.inf
        return {
            "ok": self.ok, "axis": self.axis, "at": self.at,
            "verdict": self.verdict, "stable_from": self.stable_from, "reason": self.reason,
            "hint": self.hint, "headline": self.headline, "complete": self.complete, "run": self.run,
            "spec": self.spec, "metric": self.metric, "drift": clean(self.drift),
            "drift_stderr": clean(self.drift_stderr), "tolerance": self.tolerance, "z": Z,
            "proxy_width": self.proxy_width, "fail_above_proxy": self.fail_above_proxy,
            "wider_is_better": self.wider_is_better, "warnings": list(self.warnings),
            "optima": rows(self.optima), "shifts": rows(self.shifts),
            "trend": {"shape": self.trend.shape, "slope": clean(self.trend.slope),
                      "stderr": clean(self.trend.stderr), "reach_width": clean(self.trend.reach_width)},
            "tails": [{"from_width": t.from_width, "widths": t.widths, "drift": clean(t.drift),
                       "stderr": clean(t.stderr), "scatter": clean(t.scatter), "k": clean(t.k), "measured": t.measured,
                       "jump": t.jump, "holds": t.holds,
                       "beyond": t.beyond} for t in self.tails],
            "regret": regret,
        }

    def render(self, fmt: str = "text") -> str:
        """``text`` (the tables, the shifts, the regret and the verdict) or ``json`` (:meth:`to_dict`)."""
        if fmt == "json":
            return json.dumps(self.to_dict(), indent=2) + "\n"
        if fmt not in SWEEP_FORMATS:
            raise ConfigError(f"unknown sweep format {fmt!r} (choose from {', '.join(SWEEP_FORMATS)})")
        a = self.axis
        regret = {(r["source"], r["width"]): r for r in self.regret.iter_rows(named=True)}
        lines = [f"LR sweep {self.run}  spec {self.spec}  (optimum of the {self.metric} loss)"
                 + (f"  across {a}{self.where}" if a != "width" or self.at is not None else ""),
                 f"{a:>7}  {'opt log2 lr':>11}  {'± se':>5}  {'spread':>6}  {'opt lr':>9}  {'best loss':>9}  "
                 f"{'regret@' + str(self.proxy_width):>12}  diverged"]
        for row in self.optima.iter_rows(named=True):
            edge = "" if row["bracketed"] else "  (at grid edge)"
            r = regret.get(("proxy", row["width"]))
            lines.append(f"{row['width']:>7}  {row['opt_log2_lr']:>+11.2f}  {row['opt_se']:>5.2f}  "
                         f"{row['spread']:>6.2f}  "
                         f"{2.0 ** row['opt_log2_lr']:>9.2e}  {row['best_loss']:>9.4f}  "
                         f"{_pct(r['regret_rel']) if r else 'n/a':>12}  {row['diverged']:>3}/{row['jobs']}{edge}")
        lines.append(f"shift of the optimum per doubling of {a} (log2 lr ± the 90 % interval; tolerance "
                     f"±{self.tolerance:g}):")
        for row in self.shifts.iter_rows(named=True):
            lines.append(f"  {row['width_lo']:>6} → {row['width_hi']:<6} {row['shift']:>+6.2f} ± "
                         f"{row['shift_ci']:.2f}  {row['status']}")
        trend = self.trend
        reach = (f"; within ±{self.tolerance:g} near {a} {trend.reach_width:.0f}"
                 if math.isfinite(trend.reach_width) else "")
        lines.append(f"shift trend: {trend.shape} (|shift| changes {trend.slope:+.2f} ± {trend.stderr:.2f} per "
                     f"doubling{reach})")
        lines.append("stable from: " + (f"{a} {self.stable_from}" if self.stable_from is not None else f"no {a}"))
        for source, title in (("proxy", f"the proxy {a} {self.proxy_width}"),
                              ("stable_from", f"{a} N = {self.stable_from}")):
            part = self.regret.filter(pl.col("source") == source) if not self.regret.is_empty() else self.regret
            if part.is_empty():
                continue
            cells = ", ".join(f"{r['width']}: {_pct(r['regret_rel'])} ± {100 * r['regret_rel_se']:.2f}"
                              if math.isfinite(r["regret_rel_se"]) else f"{r['width']}: {_pct(r['regret_rel'])}"
                              for r in part.iter_rows(named=True))
            lines.append(f"regret of the lr of {title} (loss above each {a}'s best): {cells}")
        lines += [f"drift over all {a}s (one line, for comparison): {self.drift:+.2f} ± {self.drift_stderr:.2f} "
                  f"log2 lr per doubling of {a}",
                  f"{'wider' if a == 'width' else 'deeper'} is better at the best lr: "
                  f"{'yes' if self.wider_is_better else 'no'}",
                  *(f"warning: {w}" for w in self.warnings),
                  f"verdict: {self.headline}"]
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines) + "\n"


def report_losses(run_dir: str | os.PathLike[str], report: SweepReport) -> pl.DataFrame:
    """The scores a report judged (:func:`job_losses` of its judgement's rows, sizes in ``width``): what its
    loss curves are drawn from, one per width — one per depth in a depth judgement."""
    return job_losses(axis_rows(load_sweep(run_dir), report.axis, report.at), report.metric)


def analyse_sweeps(run_dir: str | os.PathLike[str], **options: Any) -> list[SweepReport]:
    """Every judgement of a sweep (:func:`judgements`), each by :func:`analyse_sweep` with ``options``:
    one report for a width sweep, one per width (across depth) and one per depth (across width) for a
    depth sweep."""
    return [analyse_sweep(run_dir, axis=axis, at=at, **options) for axis, at in judgements(load_sweep(run_dir))]


def analyse_sweep(run_dir: str | os.PathLike[str], *, metric: str | None = None, tolerance: float | None = None,
                  proxy_width: int | None = None, fail_above_proxy: bool | None = None,
                  config: ConfigSource = None, axis: str | None = None, at: int | None = None) -> SweepReport:
    """Per-width optima with their uncertainty, per-doubling shifts and their trend, the width N from which
    the optimum is stable, the transfer regret, and the verdict (:class:`SweepReport`).

    ``metric`` (default ``heldout``), ``tolerance`` (default 0.25 log2 lr per doubling), ``proxy_width``
    (the width the learning rate is tuned at; default the smallest) and ``fail_above_proxy`` (default
    False: whether N above the proxy width fails :attr:`SweepReport.ok`) come from the arguments, else from
    ``[tool.coordscope.sweep]`` of ``config`` (None: the nearest pyproject.toml) — the same on every surface.

    ``axis`` (``width`` or ``depth``) and ``at`` (the fixed value of the other axis) pick one judgement of
    :func:`judgements`; unset, the sweep's first (across depth at the smallest width in a depth sweep,
    across width in a width sweep). ``proxy_width`` applies across width; across depth the proxy is the
    smallest depth.
    """
    table = (config if isinstance(config, Config) else load_config(config)).sweep
    metric = str(next(v for v in (metric, table.get("metric"), "heldout") if v is not None))
    tolerance = check_lr(next(v for v in (tolerance, table.get("tolerance"), TOLERANCE) if v is not None),
                         "tolerance")
    strict = bool(next((v for v in (fail_above_proxy, table.get("fail_above_proxy")) if v is not None), False))
    directory = local_dir(run_dir)
    meta = read_meta(directory)
    frame = load_sweep(directory)
    possible = judgements(frame)
    axis = possible[0][0] if axis is None else axis
    if axis not in AXES:
        raise ConfigError(f"unknown sweep axis {axis!r} (choose from {', '.join(AXES)})")
    at = next((x for a, x in possible if a == axis), None) if at is None else at
    if (axis, at) not in possible:
        listed = ", ".join(f"{a}" + ("" if x is None else f" at {'width' if a == 'depth' else 'depth'} {x}")
                           for a, x in possible)
        raise ConfigError(f"{directory}: cannot judge this sweep across {axis}"
                          + ("" if at is None else f" at {at}") + f"; it can be judged across {listed}")
    scores = job_losses(axis_rows(frame, axis, at), metric)
    optima = width_optima(scores)
    widths = optima["width"].to_list()
    proxy = next((v for v in (proxy_width, table.get("proxy_width")) if v is not None), None) \
        if axis == "width" else None
    if proxy is None:
        proxy = widths[0]
    elif proxy not in widths:
        raise ConfigError(f"proxy {axis} {proxy!r} is not one of the sweep's {axis}s "
                          f"({', '.join(map(str, widths))})")
    seed_widths, seed_optima = [], []
    for (width, _seed), group in scores.group_by(["width", "seed"], maintain_order=True):
        seed_widths.append(math.log2(width))
        seed_optima.append(refine_optimum(group["lr"].log(2).to_list(), group["loss"].to_list())[0])
    drift, stderr = fit_drift(seed_widths, seed_optima)
    shifts = doubling_shifts(optima, tolerance)
    trend = shift_trend(shifts, tolerance, measured=bool(optima["seed_se"].is_finite().all()))
    tail_fits = tails(optima, shifts, tolerance)
    lrs = scores["lr"].unique().sort()
    grid = (math.log2(lrs[0]), math.log2(lrs[-1]))
    verdict, stable_from, reason, hint = _judge(optima, shifts, trend, tail_fits, tolerance, grid, axis)
    sources = [("proxy", proxy)]
    if stable_from is not None and stable_from != proxy:
        sources.append(("stable_from", stable_from))
    placeable = optima.filter(pl.col("opt_log2_lr").is_finite())["width"].to_list()
    regret = transfer_regret(scores, optima, [(k, w) for k, w in sources if w in placeable])
    best = optima["best_loss"].to_list()
    warnings = [f"{axis} {w}: the lowest loss is at the edge of the lr grid; widen the grid"
                for w, b in zip(optima["width"], optima["bracketed"], strict=True) if not b]
    if scores["seed"].n_unique() < 2:
        warnings.append("one seed: the seeds' disagreement on the optimum is not measured, only the loss "
                        "curve's flatness and the optima's scatter around a line; add seeds for a firmer verdict")
    missing = missing_jobs(directory, meta)
    if missing:
        warnings.append(f"{len(missing)} of {len(meta.jobs)} jobs have no shard (killed or failed)")
    if not math.isfinite(drift):
        warnings.append(f"no drift: fewer than two {axis}s have a finite optimum")
    return SweepReport(
        run=meta.run, spec=meta.spec, metric=metric, optima=optima,
        drift=drift, drift_stderr=stderr, tolerance=tolerance,
        wider_is_better=all(b1 <= b0 for b0, b1 in pairwise(best)),
        complete=not missing and meta.status == "complete", warnings=warnings,
        shifts=shifts, trend=trend, tails=tail_fits, stable_from=stable_from, proxy_width=proxy,
        fail_above_proxy=strict, regret=regret, verdict=verdict, reason=reason, hint=hint, axis=axis, at=at,
    )
