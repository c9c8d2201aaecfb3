"""Depth coordinate checks: fits of log2(size) against log2(depth), what Depth-μP and CompleteP expect of them,
and the diagnosis when a model misses a depth rule (docs/depth.md has the table and its sources).

A depth sweep records one job per (width, depth, seed) with ``model(width, depth)``. Layers that exist at
some depths only are matched by what they are (:mod:`coordscope.blocks`): a name outside the residual blocks
matches itself (embedding, final norm, readout, ``<output>``, ``<loss>``); a name inside block i of n is
matched by relative position (``blocks.{first}``, ``blocks.{mid}``, ``blocks.{last}``), and a block's own
output is the residual stream after it. For every matched key, site, probe and step the values of all
seeds and depths are fitted, at each width, by least squares (:func:`coordscope.analysis.fit` with depth as
the abscissa). When several widths are swept too, each depth is also judged along width as an ordinary
coordinate check (names suffixed ``@ depth L``): each axis judged at fixed other.

Expected (Depth-μP, α = ½ and CompleteP, α = 1, each with its learning-rate rule): the residual stream after
the middle and the last block, its change after a step, and the model output's change, flat in depth.
Judged: ``act`` of the residual stream at every step, ``act_delta`` of the stream and of ``<output>`` for
t ≥ 1, ``act`` of ``<output>`` for t ≥ 1. Nothing else is judged: inside the blocks the two
parametrizations disagree (CompleteP keeps each block's features moving Θ(1), Depth-μP lets them move like
L^-½), so theory does not decide without knowing which one the model means. A run where no residual stream
could be found fails as ``undetermined`` rather than pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl

from coordscope.analysis import (
    DEFAULT_TOLERANCE,
    SPECTRAL,
    Finding,
    Tolerance,
    analyse,
    apply_overrides,
    findings_from,
    fit,
    judge,
    summarise,
)
from coordscope.blocks import depth_container, is_stream, position_keys
from coordscope.config import Override
from coordscope.diagnose import Diagnosis
from coordscope.outputs import OUTPUT
from coordscope.runmeta import RunMeta

DEPTH_RULES: dict[str, tuple[str, str]] = {
    "branch_unscaled": (
        "Residual branches not scaled with depth",
        "the residual stream grows with depth already at initialisation: multiply every residual branch by "
        "L^-α before adding it to the stream — x = x + (L_base/L)·f(norm(x)) for CompleteP (α = 1), "
        "x = x + √(L_base/L)·f(norm(x)) for Depth-μP (α = ½) — with the matching learning rates "
        "(CompleteP Table 1: hidden AdamW LR η·m_N⁻¹·m_L^(α−1), LayerNorm LR η·m_L^(α−1), ε ∝ m_N⁻¹·m_L^−α)"),
    "depth_lr_unscaled": (
        "Learning rate not scaled with depth",
        "the residual stream is flat in depth at initialisation (the branch multiplier is there) but its "
        "change after a step grows with depth: scale the hidden learning rate by m_L^(α−1) (Adam; "
        "α = ½, Depth-μP: η/√m_L; α = 1, CompleteP: η) and LayerNorm's by m_L^(α−1) (CompleteP Table 1)"),
    "depth_overscaled": (
        "Updates shrink with depth",
        "the residual stream's change after a step shrinks with depth: the branches are scaled down more "
        "than their learning rate makes up for (e.g. 1/L branches with Depth-μP's η/√L, or a branch "
        "multiplier applied twice); with branches × L^-α use hidden LR η·m_N⁻¹·m_L^(α−1)"),
    "depth_undetermined": (
        "No residual stream found",
        "no module list whose length changes with depth was found, so nothing can be judged against depth: "
        "build the blocks as items of an nn.ModuleList or nn.Sequential, and let model(width, depth) change "
        "their number"),
}
DEPTH_RULE_IDS: tuple[str, ...] = tuple(DEPTH_RULES)
STREAM_POSITIONS = ("mid", "last")
FINITE_DEPTH_SHRINK = 0.1  # how far the judged quantities may shrink with depth after a step (slope)


def matched(rows: pl.DataFrame) -> tuple[pl.DataFrame, str | None, dict[int, int]]:
    """The rows of a depth sweep with ``name`` replaced by its matched key (rows of unmatched blocks
    dropped, rows of a block at several positions repeated), and ``position``; plus the depth container
    and its block count at every depth."""
    names = rows.select("depth", "name").unique()
    by_depth = {int(d): names.filter(pl.col("depth") == d).get_column("name").to_list()
                for d in names.get_column("depth").unique().to_list()}
    found = depth_container(by_depth)
    container, counts = found if found is not None else (None, {})
    mapping = [(depth, name, key, pos) for depth, ns in by_depth.items() for name in ns
               for key, pos in position_keys(name, container, counts.get(depth, 0))]
    table = pl.DataFrame(mapping, schema={"depth": pl.Int64, "name": pl.String, "key": pl.String,
                                          "position": pl.String}, orient="row")
    out = rows.join(table, on=["depth", "name"]).drop("name").rename({"key": "name"})
    return out, container, counts


def depth_fits(rows: pl.DataFrame, center: float) -> pl.LazyFrame:
    """:func:`coordscope.analysis.fit` of matched rows at one width, with depth as the abscissa."""
    return fit(rows.with_columns(width=pl.col("depth")).lazy(), center)


def depth_expectations(fits: pl.LazyFrame, container: str | None, overrides: Sequence[Override] = (),
                       tolerance: Tolerance = DEFAULT_TOLERANCE) -> pl.LazyFrame:
    """What Depth-μP and CompleteP expect of each depth fit (the module docstring), in the columns
    :func:`coordscope.analysis.judge` reads; ``overrides`` apply as in a width check."""
    site, step, name = pl.col("site"), pl.col("step"), pl.col("name")
    streams = [f"{container}.{{{pos}}}" for pos in STREAM_POSITIONS] if container else []
    stream = name.is_in(streams) & (pl.col("probe") != SPECTRAL)
    output = (name == OUTPUT) & (pl.col("probe") != SPECTRAL)
    judged: pl.Expr = ((stream & ((site == "act") | ((site == "act_delta") & (step >= 1))))
                       | (output & site.is_in(["act", "act_delta"]) & (step >= 1)))
    # After a step the stream may shrink a little at small depths (Depth-μP's did, by up to 0.3 per doubling
    # over depths 2..16): the finite-depth allowance FINITE_DEPTH_SHRINK, as a width check allows the output.
    lo: pl.Expr = (pl.when(judged & (step >= 1)).then(-FINITE_DEPTH_SHRINK).when(judged).then(0.0)
                   .otherwise(None))
    hi: pl.Expr = pl.when(judged).then(0.0).otherwise(None)
    return apply_overrides(fits, lo, hi, judged, overrides, tolerance)


def _suffix(frame: pl.DataFrame, text: str) -> pl.DataFrame:
    return frame.with_columns(name=pl.col("name") + text) if text else frame


def analyse_depth(rows: pl.DataFrame, *, overrides: Iterable[Override] = (),
                  tolerance: Tolerance = DEFAULT_TOLERANCE) -> tuple[pl.DataFrame, pl.DataFrame, str | None,
                                                                     dict[int, int]]:
    """Fits per step and per layer of a depth sweep (``rows``: one probe's rows with a ``depth`` column):
    depth fits at every width, and, with two widths or more, width fits at every depth (an ordinary check,
    names suffixed ``@ depth L``). Returns (fits, layers, container, block counts)."""
    overrides = tuple(overrides)
    rows_m, container, counts = matched(rows)
    depths = sorted(rows.get_column("depth").unique().to_list())
    widths = sorted(rows.get_column("width").unique().to_list())
    center = sum(math.log2(d) for d in depths) / len(depths)
    fits_parts, layer_parts = [], []
    order = rows_m.select("name").unique(maintain_order=True).get_column("name").to_list()
    for width in widths:
        at = rows_m.filter(pl.col("width") == width).drop("position")
        fits = judge(depth_expectations(depth_fits(at, center), container, overrides, tolerance), tolerance)
        fits_df = fits.sort(["name", "site", "probe", "step"]).collect()
        suffix = f" @ width {width}" if len(widths) > 1 else ""
        layers = summarise(fits_df.lazy(), order).collect()
        fits_parts.append(_suffix(fits_df, suffix).with_columns(axis=pl.lit("depth")))
        layer_parts.append(_suffix(layers, suffix).with_columns(axis=pl.lit("depth")))
    if len(widths) > 1:
        for depth in depths:
            at_depth = rows.filter(pl.col("depth") == depth).drop("depth")
            result = analyse(at_depth, overrides=overrides, tolerance=tolerance, widths=widths)
            fits_parts.append(_suffix(result.fits, f" @ depth {depth}").with_columns(axis=pl.lit("width")))
            layer_parts.append(_suffix(result.layers, f" @ depth {depth}").with_columns(axis=pl.lit("width")))
    return (pl.concat(fits_parts, how="diagonal_relaxed"), pl.concat(layer_parts, how="diagonal_relaxed"),
            container, counts)


def _lr_depth_slopes(meta: RunMeta, container: str | None) -> dict[str, float]:
    """Slope of log2(lr) against log2(depth) of every matched hidden matrix, from ``depth_hyperparameters``."""
    per_key: dict[str, list[tuple[float, float]]] = {}
    if container is None:
        return {}
    for depth_text, params in meta.depth_hyperparameters.items():
        depth = int(depth_text)
        count = max((int(n[len(container) + 1:].split(".")[0]) + 1 for n in params
                     if n.startswith(container + ".") and n[len(container) + 1:].split(".")[0].isdigit()), default=0)
        for name, values in params.items():
            layer = meta.layers.get(name)
            if layer is None or layer.role != "hidden" or values.get("lr", 0) <= 0:
                continue
            for key, _ in position_keys(name, container, count):
                if key != name:
                    per_key.setdefault(key, []).append((math.log2(depth), math.log2(values["lr"])))
    slopes = {}
    for key, points in per_key.items():
        xs = [x for x, _ in points]
        if len(set(xs)) < 2:
            continue
        mx, my = sum(xs) / len(xs), sum(y for _, y in points) / len(points)
        sxx = sum((x - mx) ** 2 for x in xs)
        slopes[key] = sum((x - mx) * (y - my) for x, y in points) / sxx
    return slopes


def diagnose_depth(findings: list[Finding], fits: pl.DataFrame, meta: RunMeta, container: str | None
                   ) -> tuple[list[Finding], list[Diagnosis]]:
    """Hints for depth findings: branches not scaled (the stream grows at init), the learning rate not
    scaled (flat at init, its change grows), over-scaled updates (its change shrinks)."""
    depth_fits_ = fits.filter(pl.col("axis") == "depth") if "axis" in fits.columns else fits
    init = depth_fits_.filter((pl.col("site") == "act") & (pl.col("step") == 0) & pl.col("judged"))
    grows_at_init = init.filter(pl.col("verdict") == "exploding").height > 0
    lr_slopes = _lr_depth_slopes(meta, container)
    hidden_lr = sorted({round(s, 2) for s in lr_slopes.values()})
    lr_note = (f" (measured: hidden learning rate ∝ depth^{hidden_lr[0]:+.2f})" if len(hidden_lr) == 1 else "")
    fired: dict[str, list[str]] = {}

    def own_rule(f: Finding) -> str | None:
        if f.severity != "error" or " @ depth " in f.name:
            return None
        if f.verdict == "exploding":
            return "branch_unscaled" if grows_at_init else "depth_lr_unscaled"
        return "depth_overscaled" if f.verdict == "vanishing" else None

    # The residual stream says what is wrong; the output's findings follow it (its change after a step is
    # made of the stream's and the readout's, so alone it tells less).
    stream_rules = [r for f in findings if container and is_stream(f.name.split(" @ ")[0], container)
                    for r in [own_rule(f)] if r]
    out = []
    for f in findings:
        rule = own_rule(f)
        if rule is not None and stream_rules and not (container and is_stream(f.name.split(" @ ")[0], container)):
            rule = stream_rules[0]
        if f.rule == "depth_undetermined":
            rule = "depth_undetermined"
        if rule is None:
            out.append(f)
            continue
        what = "residual stream" if container and is_stream(f.name.split(" @ ")[0], container) else f.name
        slope = "" if f.slope is None else f" (slope {f.slope:+.2f} per doubling of depth at step {f.step})"
        hint = f"{what}{slope}: {DEPTH_RULES[rule][1]}" + (lr_note if rule != "branch_unscaled" else "")
        out.append(replace(f, rule=rule, hint=hint))
        fired.setdefault(rule, []).append(f.name)
    diagnoses = [Diagnosis(rule, DEPTH_RULES[rule][0], DEPTH_RULES[rule][1] + (lr_note if rule != "branch_unscaled"
                                                                              else ""),
                           tuple(dict.fromkeys(names)), "error") for rule, names in fired.items()]
    return out, diagnoses


def depth_regime(findings: Sequence[Finding]) -> str:
    """The regime of a depth sweep, in one label."""
    rules = {f.rule for f in findings if f.severity == "error"}
    if not rules:
        return "depth-μP/CompleteP-like (flat in depth)"
    if "depth_undetermined" in rules and len(rules) == 1:
        return "undetermined"
    if "branch_unscaled" in rules:
        return "unscaled branches (grows with depth)"
    if "depth_lr_unscaled" in rules:
        return "learning rate not scaled with depth"
    if "depth_overscaled" in rules:
        return "over-scaled with depth (vanishing)"
    return "mixed"


def check_depth_run(run_dir: Path, meta: RunMeta, rows: pl.LazyFrame, *, probe: str, complete: bool,
                    overrides: Iterable[Override] = (), tolerance: Tolerance = DEFAULT_TOLERANCE) -> Any:
    """Judge a depth sweep into a :class:`coordscope.report.Report` (``rows``: the run's scan)."""
    from coordscope.errors import StoreError
    from coordscope.report import Report

    frame = rows.filter(pl.col("probe") == probe).collect()
    if frame.is_empty():
        raise StoreError(f"run {str(run_dir)!r} has no values for probe {probe!r}")
    if "depth" not in frame.columns or frame.get_column("depth").n_unique() < 2:
        raise StoreError(f"run {str(run_dir)!r} has fewer than two depths recorded: a depth slope needs two")
    fits, layers, container, _ = analyse_depth(frame, overrides=overrides, tolerance=tolerance)
    findings = findings_from(layers)
    if container is None or not any(is_stream(n.split(" @ ")[0], container)
                                    for n in layers.filter(pl.col("axis") == "depth").get_column("name").to_list()):
        findings.insert(0, Finding(name="<residual stream>", site="act_delta", probe=probe, step=1, slope=None,
                                   stderr=None, expected=0.0, verdict="undetermined", severity="error",
                                   role="hidden", judged=True, rule="depth_undetermined"))
    findings, diagnoses = diagnose_depth(findings, fits, meta, container)
    return Report(ok=not any(f.severity == "error" for f in findings), complete=complete, run_dir=run_dir, meta=meta,
                  findings=findings, fits=fits, layers=layers, diagnoses=diagnoses, regime=depth_regime(findings),
                  probe=probe, tolerance=tolerance, overrides=tuple(overrides))


def depth_table(fits: pl.DataFrame, names: Sequence[str], site: str, step: int) -> dict[str, Mapping[str, Any]]:
    """slope ± stderr and verdict of some depth fits, for notes and tests."""
    rows = fits.filter(pl.col("name").is_in(list(names)) & (pl.col("site") == site) & (pl.col("step") == step))
    return {r["name"]: r for r in rows.to_dicts()}


def depth_axis_rows(rows: pl.LazyFrame | pl.DataFrame, width: int | None = None) -> pl.LazyFrame:
    """A depth sweep's rows ready to draw against depth with the width check's figures: names matched across
    depths, depth in the ``width`` column, at one width (``width``, default the smallest: each figure has
    one abscissa)."""
    lazy = rows.lazy()
    if width is None:
        width = lazy.select(pl.col("width").min()).collect().item()
    out, _, _ = matched(lazy.filter(pl.col("width") == width).collect())
    return out.drop("position").with_columns(width=pl.col("depth")).lazy()


def fits_at(fits: pl.DataFrame, other: str | None) -> pl.DataFrame:
    """The fits of one view of a run that sweeps width and depth: ``other`` is the axis held fixed and its
    value (``"width 64"``: the depth fits at width 64; ``"depth 8"``: the width fits at depth 8), whose
    names carry it as a suffix (``blocks.{last} @ width 64``), returned without it. None: every fit (a run
    that sweeps one axis)."""
    if other is None:
        return fits
    suffix = f" @ {other}"
    return (fits.filter(pl.col("name").str.ends_with(suffix))
            .with_columns(name=pl.col("name").str.strip_suffix(suffix)))
