"""Judging the curves: slope fits of log2(size) against log2(width), the slopes μP expects, verdicts.

For every (name, site, probe, step) the values of all seeds at all widths are fitted by least squares,
log2(value) = intercept + slope · log2(width), in one vectorised polars ``group_by`` (no Python per group:
a million rows take well under a second). The slope is the exponent of width in the coordinate size; under
μP the activations and their change after a step have slope 0.

Which slope is expected (:func:`expectations`) follows DESIGN.md's table: ``act`` and ``act_delta`` of every
layer are expected flat. Output-role activations may shrink: their ``act`` down to width^-0.5 (the random
part of the init logits under μP, at t = 0 and while it still dominates a few steps in), their ``act_delta``
down to width^-0.25 (the initial readout's random part still matters at small widths). Attention logits
(1/d scaling) are a sum of d_head random products at init, so at t = 0 they shrink exactly like
d_head^-0.5 — the one place a short check sees 1/√d scaling, which gives 0 there — and may shrink down to
that after training (their random part decays while the correlated part is flat). Where the head count
grows with width instead of d_head, :mod:`coordscope.checking` relaxes t = 0 to the post-training range.
Judged by default: ``act_delta`` and ``act`` for t ≥ 1, plus the output and attention logits at every step;
the gradient reaching the model's output (``<output>``'s ``act_grad``, flat); and every weight's update
*relative to the weight* (:func:`relative_updates`), the only update sizes the parametrization's conventions
cannot move: ‖ΔW_t‖₂/‖W_t‖₂ of every hidden matrix is flat in width whatever the optimizer (the spectral
condition), and rms(ΔW_t)/rms(W_t) of every hidden matrix goes like width^-½ under an Adam-like or SGD-like
optimizer (TP5 Table 3) — the optimizer family measured, not named
(:func:`coordscope.diagnose.optimizer_family`); with another, or none measured, it is not judged.
Other fits (raw ``param``, ``param_grad``, ``param_update``, ``act_grad`` inside the model) are kept and shown
but not judged: docs/theory.md says why. :class:`coordscope.config.Override` changes any of this.

A fit violates its expectation when it lies outside the expected range by more than its tolerance,
max(absolute tolerance, sigma × standard error): small deviations are never flagged (μP holds only up to
finite-width corrections) and noisy fits are not flagged on noise alone. A value that is not finite makes the
fit ``diverged``. Zeros and negative values have no logarithm and are skipped (act_delta is exactly 0 at
t = 0 by definition; those fits are dropped altogether).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

from coordscope.config import Override
from coordscope.store import SITES

FIT_KEYS: tuple[str, ...] = ("name", "site", "probe", "step")
LAYER_KEYS: tuple[str, ...] = ("name", "site", "probe")
JUDGED_SITES: tuple[str, ...] = ("act", "act_delta")
SPECTRAL = "spectral"  # the probe whose param and param_update rows carry the spectral condition
RELATIVE = "rel_"  # prefix of the probes of updates relative to weights (rel_rms, rel_spectral), derived here
ADAM_LIKE, SGD_LIKE = "Adam-like", "SGD-like"  # the optimizer families (coordscope.diagnose) that set expectations
SEVERITIES: tuple[str, ...] = ("ok", "info", "warning", "error")
VIOLATIONS: tuple[str, ...] = ("exploding", "vanishing")


@dataclass(frozen=True)
class Tolerance:
    """How far a slope may stray from its expected range: by ``absolute`` (log2 units per doubling of
    width), or by ``sigma`` standard errors of the fit, whichever is larger."""

    absolute: float = 0.25
    sigma: float = 3.0


DEFAULT_TOLERANCE = Tolerance()


def fit(rows: pl.LazyFrame, center: float = 0.0) -> pl.LazyFrame:
    """Least-squares slope of log2(value) on log2(width) per (name, site, probe, step), over all seeds.

    Columns: the keys, ``role``, ``module``, ``n`` (points fitted), ``n_widths`` (distinct widths fitted,
    capped at 2: enough to say whether a slope exists), ``n_skipped`` (zero or negative values),
    ``n_nonfinite``, ``first_nonfinite_width``, ``slope``, ``intercept`` (at log2(width) = ``center``),
    ``stderr``, ``r2``. ``slope`` is null with fewer than two widths, ``stderr`` with fewer than three
    points. act_delta at t = 0, zero by definition, has no row.

    Only plain sums are aggregated (n, Σx, Σy, Σx², Σxy, Σy²), which polars streams without building
    per-group lists; ``center`` (e.g. the mean log2 width of the run) keeps Σx² − (Σx)²/n well conditioned.
    """
    names = rows.collect_schema().names()
    if "role" not in names:
        rows = rows.with_columns(role=pl.when(pl.col("name") == "<output>").then(pl.lit("output"))
                                 .otherwise(pl.lit("unknown")))
    if "module" not in names:
        rows = rows.with_columns(module=pl.lit(None, pl.String))
    value = pl.col("value")
    usable = value.is_finite() & (value > 0)
    x, y = pl.col("x"), pl.col("y")
    sums = (
        rows.with_columns(
            x=pl.when(usable).then(pl.col("width").cast(pl.Float64).log(2) - center),
            y=pl.when(usable).then(value.log(2)),
            skipped=value.is_finite() & (value <= 0),
            nonfinite_width=pl.when(~value.is_finite()).then(pl.col("width")),
        )
        .with_columns(xx=x * x, xy=x * y, yy=y * y)
        .group_by(*FIT_KEYS, "role", "module")  # role and module follow from name: keys are cheaper than first()
        .agg(
            n=y.count(),
            x_min=x.min(),
            x_max=x.max(),
            n_skipped=pl.col("skipped").sum(),
            n_nonfinite=pl.col("nonfinite_width").count(),
            first_nonfinite_width=pl.col("nonfinite_width").min(),
            sx=x.sum(), sy=y.sum(), sxx=pl.col("xx").sum(), sxy=pl.col("xy").sum(), syy=pl.col("yy").sum(),
        )
        .filter(~((pl.col("site") == "act_delta") & (pl.col("step") == 0)
                  & (pl.col("n") == 0) & (pl.col("n_nonfinite") == 0)))
    )
    n = pl.col("n").cast(pl.Float64)
    centred = sums.with_columns(
        n_widths=pl.when(pl.col("n") == 0).then(0).when(pl.col("x_max") > pl.col("x_min")).then(2).otherwise(1),
        cxx=pl.col("sxx") - pl.col("sx") ** 2 / n,
        cxy=pl.col("sxy") - pl.col("sx") * pl.col("sy") / n,
        cyy=pl.col("syy") - pl.col("sy") ** 2 / n,
    ).with_columns(
        # Below the rounding noise of Σy² the spread of y is zero (a constant value): keeps R² meaningful.
        cyy=pl.when(pl.col("cyy") > 1e-12 * pl.col("syy")).then(pl.col("cyy")).otherwise(0.0),
    )
    slope = pl.when(pl.col("n_widths") >= 2).then(pl.col("cxy") / pl.col("cxx"))
    ssr = (pl.col("cyy") - pl.col("slope") * pl.col("cxy")).clip(lower_bound=0.0)
    return (
        centred.with_columns(slope=slope)
        .with_columns(
            intercept=(pl.col("sy") - pl.col("slope") * pl.col("sx")) / n,
            stderr=pl.when(pl.col("n") > 2).then((ssr / (n - 2) / pl.col("cxx")).sqrt()),
            r2=pl.when(pl.col("cyy") > 0).then(1.0 - ssr / pl.col("cyy"))
            .otherwise(pl.when(pl.col("slope").is_not_null()).then(1.0)),
        )
        .drop("x_min", "x_max", "sx", "sy", "sxx", "sxy", "syy", "cxx", "cxy", "cyy")
    )


def relative_updates(rows: pl.LazyFrame, probes: Sequence[str] = ("rms", SPECTRAL)) -> pl.LazyFrame:
    """Each weight's update relative to the weight, as rows of their own: at every (width, seed, step),
    ``param_update`` over ``param`` of the same name and probe, with probe ``rel_<probe>`` and site
    ``param_update`` — rms(W_{t+1} − W_t)/rms(W_t), ‖W_{t+1} − W_t‖₂/‖W_0‖₂. A probe recorded on the weight at
    t = 0 only (``spectral``: the operator norm costs power iterations, and a check's few updates barely move
    it) divides every step's update by the initial weight's.

    Why relative: μP fixes what the network computes, not how a width factor is shared between a weight's
    init, a multiplier applied in ``forward`` and its learning rate (TP5's abc-parametrizations, Table 3 vs
    Table 8; u-μP's unit-scaled weights). Moving a factor θ from the weight to its multiplier scales W and
    ΔW alike, so their ratio is the same under every such convention, while either alone is not. A weight
    that is exactly 0 at t = 0 (a zero-initialised readout, or a residual projection zeroed at init as some
    GPT recipes do) has no ratio at any step: its later W_t is made of its own updates, so the ratio says
    nothing of the parametrization — no rows for it. A non-finite weight gives a NaN ratio (``diverged``)."""
    names = rows.collect_schema().names()
    keys = [c for c in names if c not in ("site", "value")]
    param = rows.filter((pl.col("site") == "param") & pl.col("probe").is_in(list(probes)))
    update = rows.filter((pl.col("site") == "param_update") & pl.col("probe").is_in(list(probes)))
    weight = pl.coalesce("weight", "initial")
    zero_at_init = param.filter((pl.col("step") == 0) & (pl.col("value") == 0)).select("name", "probe").unique()
    initial = param.filter(pl.col("step") == 0).select(*[k for k in keys if k != "step"], initial="value")
    return (
        update.join(param.select(*keys, weight="value"), on=keys, how="left", nulls_equal=True)
        .join(initial, on=[k for k in keys if k != "step"], how="left", nulls_equal=True)
        .join(zero_at_init, on=["name", "probe"], how="anti")
        .filter(weight.is_not_null() & (weight != 0))
        .with_columns(weight=weight)
        .with_columns(value=pl.when(weight.is_finite()).then(pl.col("value") / weight.abs())
                      .otherwise(float("nan")),
                      probe=pl.lit(RELATIVE) + pl.col("probe"))
        .drop("weight", "initial")
        .select(names)
    )


def expectations(fits: pl.LazyFrame, overrides: Sequence[Override] = (),
                 tolerance: Tolerance = DEFAULT_TOLERANCE, family: str | None = None) -> pl.LazyFrame:
    """Add what μP expects of each fit: ``expected_lo``/``expected_hi`` (null where nothing is expected),
    ``expected`` (the flat value 0 clipped into the range), ``judged``, ``ignored`` and ``abs_tol``.

    ``family``: the optimizer family measured on the run (:func:`coordscope.diagnose.optimizer_family`),
    which sets what the entry-wise relative update (``rel_rms``) of a matrix should do; None, or a family
    without a rule, leaves it unjudged. Overrides apply in order, a later one winning where two match the
    same fit (an ``expected`` after an ``ignore`` judges the fit again).
    """
    site, role, step, probe = pl.col("site"), pl.col("role"), pl.col("step"), pl.col("probe")
    act_like = site.is_in(JUDGED_SITES) & (role != "loss") & ~probe.str.starts_with(RELATIVE) & (probe != SPECTRAL)
    output, attn = act_like & (role == "output"), act_like & (role == "attn_logits")
    attn_init = attn & (site == "act") & (step == 0)
    # The gradient reaching the model's output: dLoss/df of Θ(1) logits is Θ(1) (TP5), whatever the
    # parametrization inside. Gradients inside the model are not judged (docs/theory.md).
    output_grad = (site == "act_grad") & (pl.col("name") == "<output>") & (probe != SPECTRAL) \
        & ~probe.str.starts_with(RELATIVE)
    # The spectral condition (Yang, Simon & Bernstein 2023): ‖W‖₂ and ‖ΔW‖₂ both Θ(√(fan_out/fan_in)), so
    # ‖ΔW‖₂/‖W‖₂ of every hidden matrix is flat, whatever the optimizer. Input and output matrices are left
    # out: a dimension that does not grow (the vocabulary, the input size) is not small against the width
    # at the widths a check runs, and an embedding's input is one-hot, not Θ(1) coordinates. May shrink
    # down to width^-0.25: a gradient summed over a finite batch has, besides its aligned part, a part in
    # random directions whose operator norm decays like √(batch/width) against it — the first SGD updates
    # of the μP MLP measured −0.29 at width 64–512, flattening over the next steps.
    # Judged where measured: a matrix above stats.WHOLE_UPDATES entries has ‖ΔW‖₂ only at the widths where
    # it is small enough (or with exact=True), so its fit may lack widths; one width left is no fit, and
    # the activations' checks still judge that layer.
    spectral_rel = ((probe == RELATIVE + SPECTRAL) & (site == "param_update") & (role == "hidden")
                    & pl.col("slope").is_not_null())
    # Entry-wise, TP5 Table 3: under Adam-like updates (every entry ±lr) and SGD's (a gradient of fixed rank
    # on a fixed batch) a hidden matrix's entries move like 1/width against weights of 1/√width. Input and
    # output matrices are shown, not judged: μP leaves their ratio free — a readout may start smaller than
    # 1/width (or at zero, TP5 Table 3's note) and u-μP scales the embedding's LR like width^-½ on purpose.
    # Orthogonalised updates (Muon) have entries that depend on the update's rank against the width: not
    # judged.
    hidden_entry = ((probe.str.starts_with(RELATIVE) & (probe != RELATIVE + SPECTRAL) & (site == "param_update")
                     & (role == "hidden")) if family in (ADAM_LIKE, SGD_LIKE) else pl.lit(False))
    flat = act_like | spectral_rel | output_grad
    lo: pl.Expr = (pl.when(attn | (output & (site == "act"))).then(-0.5)
                   .when(output | spectral_rel).then(-0.25).when(hidden_entry).then(-0.5).when(flat).then(0.0)
                   .otherwise(None))
    hi: pl.Expr = (pl.when(attn_init | hidden_entry).then(-0.5).when(flat).then(0.0).otherwise(None))
    judged: pl.Expr = (act_like & ((step >= 1) | output | attn)) | spectral_rel | output_grad | hidden_entry
    return apply_overrides(fits, lo, hi, judged, overrides, tolerance)


def apply_overrides(fits: pl.LazyFrame, lo: pl.Expr, hi: pl.Expr, judged: pl.Expr, overrides: Sequence[Override],
                    tolerance: Tolerance) -> pl.LazyFrame:
    """The expectation columns from the built-in range ``lo``..``hi`` and ``judged`` (width fits here, depth
    fits in :mod:`coordscope.depth`), after ``overrides`` in order, a later one winning where two match
    the same fit (an ``expected`` after an ``ignore`` judges the fit again)."""
    site = pl.col("site")
    ignored: pl.Expr = pl.lit(False)
    abs_tol: pl.Expr = pl.lit(tolerance.absolute)
    for override in overrides:
        match = pl.col("name").str.contains(override.name_regex())
        if override.site != "*":
            match = match & (site == override.site)
        if override.probe is not None:
            match = match & (pl.col("probe") == override.probe)
        if override.expected is not None:
            lo = pl.when(match).then(override.expected[0]).otherwise(lo)
            hi = pl.when(match).then(override.expected[1]).otherwise(hi)
            judged = pl.when(match).then(True).otherwise(judged)
        if override.tolerance is not None:
            abs_tol = pl.when(match).then(override.tolerance).otherwise(abs_tol)
        if override.ignore or override.expected is not None:  # a later expectation un-ignores
            ignored = pl.when(match).then(override.ignore).otherwise(ignored)
    return fits.with_columns(
        expected_lo=lo.cast(pl.Float64), expected_hi=hi.cast(pl.Float64), abs_tol=abs_tol.cast(pl.Float64),
        ignored=ignored,
    ).with_columns(
        expected=pl.lit(0.0).clip(pl.col("expected_lo"), pl.col("expected_hi")),
        judged=judged & ~pl.col("ignored"),
    )


def judge(fits: pl.LazyFrame, tolerance: Tolerance = DEFAULT_TOLERANCE) -> pl.LazyFrame:
    """Add ``tolerance``, ``excess`` (how far outside range + tolerance; > 0 is a violation),
    ``verdict`` (flat | exploding | vanishing | diverged | undetermined; null where nothing is expected)
    and ``severity`` (error: judged violation or diverged; warning: unjudged violation or a judged fit
    without data; ok: as expected; info: nothing expected, or ignored)."""
    slope, lo, hi = pl.col("slope"), pl.col("expected_lo"), pl.col("expected_hi")
    tol = pl.max_horizontal(pl.col("abs_tol"), tolerance.sigma * pl.col("stderr").fill_null(0.0))
    verdict = (
        pl.when(pl.col("n_nonfinite") > 0).then(pl.lit("diverged"))
        .when(lo.is_null()).then(pl.lit(None, pl.String))
        .when(slope.is_null()).then(pl.lit("undetermined"))
        .when(slope - hi > pl.col("tolerance")).then(pl.lit("exploding"))
        .when(lo - slope > pl.col("tolerance")).then(pl.lit("vanishing"))
        .otherwise(pl.lit("flat"))
    )
    v = pl.col("verdict")
    severity = (
        pl.when(pl.col("ignored")).then(pl.lit("info"))
        .when(v == "diverged").then(pl.lit("error"))
        .when(pl.col("judged") & v.is_in(VIOLATIONS)).then(pl.lit("error"))
        .when(v.is_in([*VIOLATIONS, "undetermined"])).then(pl.lit("warning"))
        .when(v == "flat").then(pl.lit("ok"))
        .otherwise(pl.lit("info"))
    )
    return (
        fits.with_columns(tolerance=tol)
        .drop("abs_tol")
        .with_columns(excess=pl.max_horizontal(slope - hi, lo - slope) - pl.col("tolerance"), verdict=verdict)
        .with_columns(severity=severity)
    )


def summarise(fits: pl.LazyFrame, order: Sequence[str] = ()) -> pl.LazyFrame:
    """One row per layer (name, site, probe): the worst step — highest severity, then furthest outside its
    tolerance; for a diverged layer the first step with non-finite values — with that step's fit, plus
    ``steps`` (every step with an error or warning), ``layer_judged`` (any step judged) and, when diverged,
    ``first_step``/``first_width``. Rows come in ``order`` of names (the model's order), then by site.

    A step that could not be fitted (``undetermined``) never hides a later step's real slope: the worst
    *determined* step stands for the layer. A judged layer with no determined step at all cannot pass: it
    is an ``error`` (``undetermined``) — e.g. a zero-initialised readout leaves every hidden ``act_delta``
    exactly 0 at t = 1, so a one-step check says nothing about them — unless its values stayed exactly 0
    over two or more judged steps, which is a layer that does not change in training (frozen, or fed by
    nothing that changes): that is shown as ``info``.
    """
    rank = pl.col("severity").replace_strict({s: i for i, s in enumerate(SEVERITIES)}, return_dtype=pl.Int8)
    diverged = pl.col("verdict") == "diverged"
    bad = pl.col("severity").is_in(["error", "warning"])
    undetermined = pl.col("verdict") == "undetermined"
    all_zero = (pl.col("n") == 0) & (pl.col("n_skipped") > 0) & (pl.col("n_nonfinite") == 0)
    ordered = fits.with_columns(
        _undetermined=undetermined.fill_null(False),
        _rank=rank,
        _first=pl.when(diverged).then(pl.col("step")).otherwise(0),
        _excess=pl.col("excess").fill_null(float("-inf")),
    ).sort(["_undetermined", "_rank", "_first", "_excess", "step"], descending=[False, True, False, True, False])
    first = [pl.col(c).first() for c in fits.collect_schema().names() if c not in LAYER_KEYS]
    name_order = {name: i for i, name in enumerate(order)}
    static = (pl.col("_zero_steps") >= 2) & (pl.col("_zero_steps") == pl.col("_judged_steps"))
    return (
        ordered.group_by(LAYER_KEYS, maintain_order=True)
        .agg(
            *first,
            steps=pl.col("step").filter(bad).sort(),
            first_step=pl.col("step").filter(diverged).min(),
            first_width=pl.col("first_nonfinite_width").sort_by("step").drop_nulls().first(),
            layer_judged=pl.col("judged").any(),
            _judged_steps=pl.col("judged").sum(),
            _zero_steps=(pl.col("judged") & all_zero).sum(),
        )
        .with_columns(
            severity=pl.when(pl.col("layer_judged") & (pl.col("verdict") == "undetermined") & ~pl.col("ignored"))
            .then(pl.when(static).then(pl.lit("info")).otherwise(pl.lit("error")))
            .otherwise(pl.col("severity")),
            _order=pl.col("name").replace_strict(name_order, default=len(name_order), return_dtype=pl.Int64),
            _site=pl.col("site").replace_strict({s: i for i, s in enumerate(SITES)}, default=len(SITES),
                                                return_dtype=pl.Int64),
        )
        .sort(["_order", "name", "_site", "probe"])
        .drop("_order", "_site", "_judged_steps", "_zero_steps")
    )


@dataclass(frozen=True)
class Finding:
    """A layer (name, site, probe) whose worst step is an error or a warning.

    The contract keys (DESIGN.md, check JSON) come first; ``step`` is the worst step, ``steps`` every
    step with a problem; ``first_step``/``first_width`` say where a diverged layer first went non-finite.
    ``hint`` and ``rule`` are filled in by :mod:`coordscope.diagnose`.
    """

    name: str
    site: str
    probe: str
    step: int
    slope: float | None
    stderr: float | None
    expected: float | None
    verdict: str
    severity: str
    hint: str = ""
    role: str = "unknown"
    expected_range: tuple[float, float] | None = None
    tolerance: float | None = None
    r2: float | None = None
    judged: bool = True
    steps: tuple[int, ...] = field(default_factory=tuple)
    first_step: int | None = None
    first_width: int | None = None
    rule: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """(name, site, probe): what a finding is about."""
        return self.name, self.site, self.probe

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the contract keys plus the extras; NaN/inf become null."""
        out = asdict(self)
        out["steps"] = list(self.steps)
        out["expected_range"] = list(self.expected_range) if self.expected_range is not None else None
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def findings_from(layers: pl.DataFrame) -> list[Finding]:
    """The layer summary rows with severity error or warning, as :class:`Finding` objects."""
    rows = layers.filter(pl.col("severity").is_in(["error", "warning"])).to_dicts()
    return [_finding(row) for row in rows]


def _finding(row: Mapping[str, Any]) -> Finding:
    lo, hi = row.get("expected_lo"), row.get("expected_hi")
    return Finding(
        name=row["name"], site=row["site"], probe=row["probe"], step=int(row["step"]),
        slope=row.get("slope"), stderr=row.get("stderr"), expected=row.get("expected"),
        verdict=row.get("verdict") or "undetermined", severity=row["severity"], role=row.get("role") or "unknown",
        expected_range=None if lo is None or hi is None else (lo, hi), tolerance=row.get("tolerance"),
        r2=row.get("r2"), judged=bool(row.get("judged")), steps=tuple(row.get("steps") or ()),
        first_step=row.get("first_step"), first_width=row.get("first_width"),
    )


@dataclass(frozen=True)
class Analysis:
    """The fits per step (:func:`fit` + :func:`expectations` + :func:`judge`) and per layer
    (:func:`summarise`), as DataFrames, and the findings drawn from the layers."""

    fits: pl.DataFrame
    layers: pl.DataFrame
    findings: list[Finding]
    family: str | None = None


def analyse(rows: pl.LazyFrame | pl.DataFrame, *, overrides: Iterable[Override] = (),
            tolerance: Tolerance = DEFAULT_TOLERANCE, order: Sequence[str] = (),
            widths: Sequence[int] = (), family: str | Callable[[pl.DataFrame], str | None] | None = None
            ) -> Analysis:
    """Fit, set expectations, judge and summarise the rows of a run (already filtered to the probes to
    judge; :func:`relative_updates` adds the relative updates). ``order`` lists names in model order, for
    the layer table; ``widths`` (the run's) centre the fit's log-widths. ``family``: the optimizer family,
    or a function that measures it on the fits (:func:`coordscope.diagnose.optimizer_family`)."""
    center = sum(math.log2(w) for w in widths) / len(widths) if widths else 0.0
    fitted = fit(rows.lazy(), center).collect()
    measured = family(fitted) if callable(family) else family
    fits = judge(expectations(fitted.lazy(), tuple(overrides), tolerance, measured), tolerance)
    fits_df = fits.sort(["name", "site", "probe", "step"]).collect()
    layers = summarise(fits_df.lazy(), order).collect()
    return Analysis(fits=fits_df, layers=layers, findings=findings_from(layers), family=measured)
