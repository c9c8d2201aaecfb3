"""Plotly figures of coord checks and LR sweeps, shared by the Streamlit app and the HTML report.

Pure functions: polars frames in, ``go.Figure`` out, so the app and the report can never draw the same
data differently, and tests can assert on a figure's traces without a browser. The frames are small —
:func:`seed_bands` reduces a run's rows (possibly a lazy scan of millions) to one row per layer, step and
width before anything is drawn.

Conventions every figure follows: width and learning rate on log axes labelled with their powers of two
(a slope on those axes is the exponent the fits report), coordinate sizes on a log axis, and layers that
fail the check (severity ``error`` in ``Report.fits``) drawn thick and red with "⚠" before their name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

WARN = "⚠"
MAX_PANELS = 6  # more panels than this make each too small to read; pick_steps chooses which

# Ordinary layers: calm colours without red, so that the violating layers (reds) stand out.
CALM = ("#4C78A8", "#54A24B", "#B279A2", "#72B7B2", "#9D755D", "#79706E", "#EECA3B", "#1F3B73", "#8CD17D",
        "#D4A6C8", "#499894", "#B6992D")
ALARM = ("#D62728", "#FF7F0E", "#C2185B", "#8C564B", "#FF1493", "#8C0000", "#E6AB02", "#FF5A36")  # distinct hues
GUIDE = "#7F7F7F"
GUIDED_SITES = ("act", "act_delta")  # where μP's expectation is flat for every layer but the output
DASHES = ("solid", "dash", "dot", "dashdot")
RUN_COLOURS = ("#E4572E", "#2E86AB", "#59A14F", "#B07AA1", "#F28E2B", "#17BECF")  # compare: one colour per run
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x", "star", "hexagon", "triangle-down",
           "pentagon")  # one marker per layer: lines that coincide still show every layer

# Verdict → colour of the slope heatmap. "not judged": nothing is expected of that fit (e.g. param sites).
VERDICT_COLOURS: dict[str, str] = {
    "flat": "#59A14F",
    "exploding": "#E15759",
    "vanishing": "#4E79A7",
    "diverged": "#2B2B2B",
    "undetermined": "#F1CE63",
    "not judged": "#D9D9D9",
}


def seed_bands(rows: pl.LazyFrame | pl.DataFrame, *, site: str, probe: str,
               names: Sequence[str] | None = None, steps: Sequence[int] | None = None) -> pl.DataFrame:
    """One row per (name, step, width) of one site and probe: the spread over seeds.

    ``mean`` is the geometric mean over seeds (the curves live on a log axis, where it is the middle),
    ``lo``/``hi`` the smallest and largest value; only finite positive values count (a log axis cannot
    show the rest), and ``n_nonfinite`` counts the NaN/inf values, which stay visible in the hover text.
    Filters are applied to the lazy frame first, so a scan reads only the rows it needs.
    """
    lazy = rows.lazy().filter((pl.col("site") == site) & (pl.col("probe") == probe))
    if names is not None:
        lazy = lazy.filter(pl.col("name").is_in(list(names)))
    if steps is not None:
        lazy = lazy.filter(pl.col("step").is_in(list(steps)))
    if "role" not in lazy.collect_schema().names():
        lazy = lazy.with_columns(role=pl.lit("unknown"))
    value = pl.col("value")
    usable = value.is_finite() & (value > 0)
    return (
        lazy.group_by("name", "role", "step", "width")
        .agg(
            mean=(2.0 ** value.filter(usable).log(2).mean()),
            lo=value.filter(usable).min(),
            hi=value.filter(usable).max(),
            n_seeds=pl.col("seed").n_unique(),
            n_nonfinite=(~value.is_finite()).sum(),
        )
        .with_columns(site=pl.lit(site), probe=pl.lit(probe))
        .sort("name", "step", "width")
        .collect()
    )


def pick_steps(steps: Iterable[int], limit: int = MAX_PANELS) -> list[int]:
    """At most ``limit`` of ``steps``, evenly spread and always keeping the first and the last."""
    ordered = sorted(set(steps))
    if len(ordered) <= limit:
        return ordered
    picks = {ordered[round(i * (len(ordered) - 1) / (limit - 1))] for i in range(limit)}
    return sorted(picks)


def violations(fits: pl.DataFrame | None, site: str | None = None, probe: str | None = None) -> set[tuple[str, int]]:
    """(name, step) pairs whose fit fails the check (severity ``error``), optionally of one site and probe."""
    if fits is None or fits.is_empty():
        return set()
    bad = fits.filter(pl.col("severity") == "error")
    if site is not None:
        bad = bad.filter(pl.col("site") == site)
    if probe is not None:
        bad = bad.filter(pl.col("probe") == probe)
    return {(str(n), int(s)) for n, s in bad.select("name", "step").iter_rows()}


def _power_of_two_label(value: float) -> str:
    exponent = math.log2(value)
    if abs(exponent - round(exponent)) < 1e-9 and exponent < 0:
        return f"2^{round(exponent)}"
    return f"{value:g}"


def _log2_axis(values: Iterable[float]) -> dict[str, object]:
    """A log axis ticked at the given values (widths or learning rates), labelled as they are."""
    ticks = sorted({float(v) for v in values if v > 0})
    return {"type": "log", "tickvals": ticks, "ticktext": [_power_of_two_label(v) for v in ticks]}


def drawable_steps(bands: pl.DataFrame) -> list[int]:
    """The steps of :func:`seed_bands` with something a log axis can show (act_delta has nothing at t = 0)."""
    drawable = bands.filter(pl.col("mean").is_not_null())
    return sorted(drawable.get_column("step").unique().to_list())


def _panel_grid(count: int) -> tuple[int, int]:
    cols = min(count, 3)
    return max(1, math.ceil(count / cols)), max(1, cols)


def _place(index: int, cols: int) -> tuple[int, int]:
    """(row, col), 1-based, of panel ``index`` in a grid ``cols`` wide."""
    return index // cols + 1, index % cols + 1


def _add_panels(fig: go.Figure, traces: Sequence[go.Scatter], places: Sequence[tuple[int, int]],
                widths: Iterable[float], panels: int, cols: int, ytitle: str) -> None:
    """Add the traces in one call (one at a time costs plotly a relayout each: seconds for hundreds) and
    set the shared axes: width and size on log axes, "width" written only under the lowest panel of a
    column, where it cannot collide with the title of the panel below."""
    fig.add_traces(list(traces), rows=[r for r, _ in places], cols=[c for _, c in places])
    fig.update_xaxes(**_log2_axis(widths))
    fig.update_yaxes(type="log", exponentformat="power")
    fig.update_yaxes(title_text=ytitle, col=1)
    for index in range(panels):
        if index + cols >= panels:
            row, col = _place(index, cols)
            fig.update_xaxes(title_text="width", row=row, col=col)


def _band_trace(x: list[float], lo: list[float], hi: list[float], colour: str, group: str) -> go.Scatter:
    """The seed spread as one closed polygon (forward along hi, back along lo): one trace, not two."""
    return go.Scatter(x=x + x[::-1], y=hi + lo[::-1], fill="toself", fillcolor=colour, opacity=0.18,
                      line={"width": 0}, hoverinfo="skip", showlegend=False, legendgroup=group, mode="lines")


def _layer_order(bands: pl.DataFrame, order: Sequence[str] | None) -> list[str]:
    present = bands.get_column("name").unique(maintain_order=True).to_list()
    if not order:
        return sorted(present)
    rank = {name: i for i, name in enumerate(order)}
    return sorted(present, key=lambda n: (rank.get(n, len(rank)), n))


def coord_check_figure(bands: pl.DataFrame, fits: pl.DataFrame | None = None, *,
                       steps: Sequence[int] | None = None, order: Sequence[str] | None = None,
                       title: str | None = None) -> go.Figure:
    """Small multiples of a coord check: one panel per step, x = width (log2), y = size (log), one line per
    layer (the geometric mean over seeds) with a band from the smallest to the largest seed.

    ``bands``: :func:`seed_bands` of one site and probe. ``fits``: ``Report.fits``; the layers whose fit at
    a step is an error are drawn thick and red in that panel, and "⚠" marks their legend entry. ``steps``:
    the panels (default: up to :data:`MAX_PANELS` steps that have drawable values). ``order``: the layer
    order of the legend (default alphabetical). The legend groups each layer across panels: clicking it
    hides the layer everywhere.
    """
    site = bands.get_column("site")[0] if bands.height else ""
    probe = bands.get_column("probe")[0] if bands.height else ""
    shown = list(steps) if steps is not None else pick_steps(drawable_steps(bands))
    bad = violations(fits, site, probe)
    names = _layer_order(bands, order)
    rows, cols = _panel_grid(len(shown))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"step {s}" for s in shown],
                        horizontal_spacing=0.06, vertical_spacing=0.12 if rows > 1 else 0.1)
    by_key = bands.filter(pl.col("step").is_in(shown)).partition_by("name", "step", as_dict=True)
    traces: list[go.Scatter] = []
    places: list[tuple[int, int]] = []
    calm = iter(CALM * (len(names) // len(CALM) + 1))
    alarm_index = 0
    for layer_index, name in enumerate(names):
        failing = sorted(s for n, s in bad if n == name and s in shown)
        if failing:
            colour, dash = ALARM[alarm_index % len(ALARM)], DASHES[alarm_index // len(ALARM) % len(DASHES)]
            alarm_index += 1
            label = f"{WARN} {name}"
        else:
            colour, dash, label = next(calm), "solid", name
        legend_shown = False
        for index, step in enumerate(shown):
            part = by_key.get((name, step))
            if part is None:
                continue
            part = part.filter(pl.col("mean").is_not_null())
            if part.is_empty():
                continue
            x = part.get_column("width").cast(pl.Float64).to_list()
            violating = step in failing
            traces.append(_band_trace(x, part.get_column("lo").to_list(), part.get_column("hi").to_list(),
                                      colour, name))
            hover = [f"{label}<br>step {step} · width {w:g}<br>{site} {probe} = {m:.4g}"
                     + (f"<br>{k} non-finite value(s)" if k else "")
                     for w, m, k in zip(x, part.get_column("mean"), part.get_column("n_nonfinite"), strict=True)]
            traces.append(go.Scatter(
                x=x, y=part.get_column("mean").to_list(), mode="lines+markers", name=label, legendgroup=name,
                showlegend=not legend_shown, line={"color": colour, "width": 4.5 if violating else 1.6,
                                                   "dash": dash},
                marker={"size": 8 if violating else 5, "symbol": SYMBOLS[layer_index % len(SYMBOLS)]},
                hovertext=hover, hoverinfo="text",
                meta={"layer": name, "step": step, "violating": violating},
            ))
            places += [_place(index, cols)] * 2
            legend_shown = True
    if site in GUIDED_SITES:
        for index, step in enumerate(shown):
            guide = _flat_guide(bands.filter(pl.col("step") == step), first=index == 0)
            traces += guide
            places += [_place(index, cols)] * len(guide)
    _add_panels(fig, traces, places, bands.get_column("width").unique().to_list(), len(shown), cols,
                f"{probe}({site})")
    # One y range for every panel: a wobble in one panel must look as small as it is next to the others.
    fig.update_yaxes(matches="y")
    fig.update_layout(title=title, height=max(360, 320 * rows), legend={"title": {"text": "layer"}},
                      margin={"t": 80 if title else 50}, template="plotly_white")
    return fig


def _flat_guide(step_bands: pl.DataFrame, first: bool) -> list[go.Scatter]:
    """The slope μP expects here (0: flat) and, for scale, what SP's blow-up looks like (∝ width), both
    through the layers' geometric-mean size at the smallest width, dotted grey, behind the data."""
    drawn = step_bands.filter(pl.col("mean").is_not_null() & (pl.col("mean") > 0))
    if drawn.is_empty():
        return []
    widths = sorted(drawn.get_column("width").unique().to_list())
    anchor = float(drawn.filter(pl.col("width") == widths[0]).select(pl.col("mean").log().mean().exp()).item())
    guides = []
    for label, slope in (("μP expects: flat (slope 0)", 0.0), ("for scale: ∝ width (slope +1)", 1.0)):
        guides.append(go.Scatter(
            x=[float(w) for w in widths], y=[anchor * (w / widths[0]) ** slope for w in widths], mode="lines",
            name=label, legendgroup=f"guide{slope}", showlegend=first, hoverinfo="skip",
            line={"color": GUIDE, "dash": "dot" if slope == 0 else "dashdot", "width": 1.2},
            opacity=0.8 if slope == 0 else 0.45,
        ))
    return guides


def label_axis(figure: go.Figure, axis: str) -> go.Figure:
    """A coord-check figure or slope heatmap whose abscissa is ``axis`` (a depth sweep's depth, a dimension
    sweep's ``d_ff``) rather than width, titled so."""
    figure.for_each_xaxis(lambda x: x.update(title_text=axis) if x.title.text == "width" else None)
    figure.for_each_annotation(lambda a: a.update(text=a.text.replace("doubling of width", f"doubling of {axis}")))
    if figure.layout.title.text:
        figure.update_layout(title_text=figure.layout.title.text.replace("of width", f"of {axis}"))
    return figure


def _verdict_category(verdict: str | None) -> str:
    return verdict if verdict in VERDICT_COLOURS else "not judged"


def _discrete_colourscale(categories: Sequence[str]) -> list[list[object]]:
    """A colourscale of flat bands, one per category code 0..n-1 (plotly scales are continuous)."""
    n = len(categories)
    scale: list[list[object]] = []
    for i, category in enumerate(categories):
        colour = VERDICT_COLOURS[category]
        scale += [[i / n, colour], [(i + 1) / n, colour]]
    return scale


def _signed(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value if abs(value) >= 0.005 else 0.0:+.2f}"


def slope_heatmap(fits: pl.DataFrame, *, order: Sequence[str] | None = None, title: str | None = None) -> go.Figure:
    """Slope per layer × step, coloured by verdict, the slope written in each cell.

    ``fits``: ``Report.fits`` (already filtered to the sites and probes to show). Rows are "name · site",
    with ``[probe]`` where it is not the probe of most rows, in ``order`` of names (the model's), first at the
    top; hovering a cell gives slope ± stderr, the expected range and the verdict.
    """
    categories = list(VERDICT_COLOURS)
    code = {c: i for i, c in enumerate(categories)}
    rank = {name: i for i, name in enumerate(order or ())}
    steps = sorted(fits.get_column("step").unique().to_list()) if fits.height else []
    keys = sorted({(str(n), str(s), str(p)) for n, s, p in fits.select("name", "site", "probe").iter_rows()},
                  key=lambda k: (rank.get(k[0], len(rank)), k[0], k[1], k[2]))
    # most rows carry the run's probe; the others (a weight's update relative to it: rel_rms, rel_spectral)
    # are named, or two rows of one layer and site would share a label
    main = fits.group_by("probe").len().sort("len")["probe"][-1] if fits.height else None
    labels = [f"{n} · {s}" + ("" if p == main else f" [{p}]") for n, s, p in keys]
    row_of = {k: i for i, k in enumerate(keys)}
    col_of = {s: j for j, s in enumerate(steps)}
    z: list[list[float | None]] = [[None] * len(steps) for _ in keys]
    text = [[""] * len(steps) for _ in keys]
    hover = [[""] * len(steps) for _ in keys]
    for r in fits.iter_rows(named=True):
        i, j = row_of[(r["name"], r["site"], r["probe"])], col_of[r["step"]]
        category = _verdict_category(r["verdict"])
        z[i][j] = code[category]
        text[i][j] = _signed(r["slope"])
        se = r["stderr"]
        expected = ("nothing expected" if r["expected_lo"] is None
                    else f"expected {r['expected_lo']:g}..{r['expected_hi']:g}")
        hover[i][j] = (f"{labels[i]} · step {r['step']}<br>slope {_signed(r['slope'])}"
                       + ("" if se is None else f" ± {se:.2f}") + f"<br>{expected}<br>{category}"
                       + (f" ({r['severity']})" if r["severity"] in ("error", "warning") else ""))
    n = len(categories)
    fig = go.Figure(go.Heatmap(
        z=z, x=[str(s) for s in steps], y=labels, text=text, texttemplate="%{text}", hovertext=hover,
        hoverinfo="text", zmin=-0.5, zmax=n - 0.5, colorscale=_discrete_colourscale(categories), xgap=2, ygap=2,
        colorbar={"tickvals": list(range(n)), "ticktext": categories, "title": {"text": "verdict"}},
    ))
    fig.update_yaxes(autorange="reversed", title_text="layer · site")
    fig.update_xaxes(type="category", title_text="step")
    fig.update_layout(title=title, height=max(320, 24 * len(labels) + 140), template="plotly_white",
                      margin={"l": 10})
    return fig


def sweep_curves(scores: pl.DataFrame) -> pl.DataFrame:
    """Loss per (width, lr) over seeds from one score per job (``coordscope.transfer.job_losses``): ``loss``
    the mean, ``lo``/``hi`` the spread; a width and lr where some seed diverged has an infinite mean."""
    return (scores.group_by("width", "lr")
            .agg(loss=pl.col("loss").mean(), lo=pl.col("loss").min(), hi=pl.col("loss").max())
            .sort("width", "lr"))


def lr_sweep_figure(curves: pl.DataFrame, optima: pl.DataFrame | None = None, *, drift: float | None = None,
                    stable_from: int | None = None, title: str | None = None, axis: str = "width") -> go.Figure:
    """Loss against learning rate (log2), one curve per width, each width's optimum marked (TP5's Fig. 1).
    ``axis`` ``depth``: the curves are a depth sweep's (``SweepReport.axis``), one per depth, labelled so.

    ``curves``: :func:`sweep_curves`. ``optima``: ``SweepReport.optima`` (``width``, ``opt_log2_lr``,
    ``best_loss``); each optimum is a star at its refined learning rate. ``drift``: the sweep's slope of
    the optimal log2 lr against log2 width; the fitted line through the optima is drawn as a dotted
    vertical line per width in that width's colour — lines that coincide mean the optimum transfers.
    ``stable_from``: N, the width from which the optimum is stable; the curves of narrower widths (the
    finite-width regime) are drawn dashed and faint, and N's optimum — the learning rate to transfer — is a
    solid vertical line. Non-finite losses (diverged jobs) are left out of the curves and drawn as crosses
    at the top.
    """
    fig = go.Figure()
    _draw_sweep(fig, curves, optima, drift=drift, stable_from=stable_from, colour_of=_width_colours([curves]),
                axis=axis)
    fig.update_xaxes(**_log2_axis(curves.get_column("lr").to_list()), title_text="learning rate")
    fig.update_yaxes(title_text="loss")
    fig.update_layout(title=title, height=480, template="plotly_white", legend={"title": {"text": axis}})
    return fig


class SweepPanel(NamedTuple):
    """One sweep of :func:`lr_sweep_panels`: its label (the run), :func:`sweep_curves`, ``SweepReport.optima``,
    N (``stable_from``) and the verdict to write above the panel."""

    label: str
    curves: pl.DataFrame
    optima: pl.DataFrame | None = None
    stable_from: int | None = None
    verdict: str | None = None


def lr_sweep_panels(panels: Sequence[SweepPanel], *, title: str | None = None, axis: str = "width") -> go.Figure:
    """Several sweeps side by side, one panel each, on shared axes — Tensor Programs V's Figure 1 when one
    is an SP sweep and one a μP sweep: the SP optima slide to smaller learning rates as width grows, the μP
    optima line up. Each panel is drawn as :func:`lr_sweep_figure` draws one sweep, a width has the same
    colour in every panel (one legend entry, toggling it everywhere), and every trace's ``meta`` names its
    panel's run (``meta["run"]``). ``axis``: what the curves are one per (``width``, or ``depth``)."""
    titles = [f"{p.label} · {p.verdict}" if p.verdict else p.label for p in panels]
    fig = make_subplots(rows=1, cols=max(1, len(panels)), shared_xaxes="all", shared_yaxes="all",
                        subplot_titles=titles, horizontal_spacing=0.04)
    colour_of = _width_colours([p.curves for p in panels])
    shown: set[str] = set()
    lrs: list[float] = []
    for col, panel in enumerate(panels, start=1):
        _draw_sweep(fig, panel.curves, panel.optima, stable_from=panel.stable_from, colour_of=colour_of,
                    place={"row": 1, "col": col}, run=panel.label, shown=shown, axis=axis)
        lrs += panel.curves.get_column("lr").to_list()
    fig.update_xaxes(**_log2_axis(lrs), title_text="learning rate")
    fig.update_yaxes(title_text="loss", col=1)
    fig.update_layout(title=title, height=480, template="plotly_white", legend={"title": {"text": axis}})
    return fig


def _width_colours(curves: Iterable[pl.DataFrame]) -> dict[int, str]:
    widths = sorted({w for frame in curves for w in frame.get_column("width").unique().to_list()})
    return {w: CALM[i % len(CALM)] for i, w in enumerate(widths)}


def _draw_sweep(fig: go.Figure, curves: pl.DataFrame, optima: pl.DataFrame | None, *, colour_of: Mapping[int, str],
                drift: float | None = None, stable_from: int | None = None, place: Mapping[str, int] | None = None,
                run: str | None = None, shown: set[str] | None = None, axis: str = "width") -> None:
    """Add one sweep's curves, optima and guides to ``fig`` (at ``place``, a subplot's row and col, if any).
    ``shown``: legend entries already shown by another panel (updated here), so each appears once;
    ``axis``: what the sizes in the ``width`` column are (``width`` or ``depth``), for the labels."""
    where = dict(place or {})
    tag = {"run": run} if run is not None else {}
    shown = set() if shown is None else shown

    def legend(name: str) -> bool:
        first = name not in shown
        shown.add(name)
        return first

    widths = sorted(curves.get_column("width").unique().to_list())
    finite = curves.filter(pl.col("loss").is_finite())
    top = finite.get_column("hi").filter(finite.get_column("hi").is_finite()).max() if finite.height else None
    for width in widths:
        colour = colour_of[width]
        part = curves.filter(pl.col("width") == width).sort("lr")
        good = part.filter(pl.col("loss").is_finite())
        narrow = stable_from is not None and width < stable_from
        fig.add_trace(go.Scatter(
            x=good["lr"].to_list(), y=good["loss"].to_list(), mode="lines+markers", name=f"{axis} {width}",
            legendgroup=str(width), showlegend=legend(f"{axis} {width}"),
            line={"color": colour, "dash": "dash" if narrow else "solid"},
            opacity=0.45 if narrow else 1.0, meta={"width": width, "below_stable_from": narrow, **tag},
            error_y={"type": "data", "symmetric": False, "color": colour, "thickness": 1,
                     "array": (good["hi"] - good["loss"]).to_list(),
                     "arrayminus": (good["loss"] - good["lo"]).to_list()},
        ), **where)
        bad = part.filter(~pl.col("loss").is_finite())
        if bad.height:
            fig.add_trace(go.Scatter(
                x=bad["lr"].to_list(), y=[top if isinstance(top, float) else 1.0] * bad.height, mode="markers",
                name=f"{axis} {width} diverged", legendgroup=str(width), showlegend=False,
                marker={"symbol": "x", "color": colour, "size": 10},
                hovertext=[f"{axis} {width}: diverged at lr {v:g}" for v in bad["lr"]], hoverinfo="text",
            ), **where)
    placed = optima.filter(pl.col("opt_log2_lr").is_finite()) if optima is not None else None
    if placed is None or not placed.height:
        return
    fig.add_trace(go.Scatter(
        x=[2.0 ** v for v in placed["opt_log2_lr"]], y=placed["best_loss"].to_list(), mode="markers",
        name="optimum", legendgroup="optimum", showlegend=legend("optimum"),
        marker={"symbol": "star", "size": 16, "color": [colour_of.get(w, "#111111") for w in placed["width"]],
                "line": {"color": "#111111", "width": 1}},
        hovertext=[f"{run + ': ' if run else ''}{axis} {w}: optimal lr 2^{v:.2f}"
                   for w, v in placed.select("width", "opt_log2_lr").iter_rows()],
        hoverinfo="text", **({"meta": tag} if tag else {}),
    ), **where)
    if drift is not None and math.isfinite(drift):
        log_w = [math.log2(w) for w in placed["width"]]
        intercept = sum(placed["opt_log2_lr"]) / placed.height - drift * sum(log_w) / len(log_w)
        for width in placed["width"]:
            fig.add_vline(x=2.0 ** (intercept + drift * math.log2(width)),
                          line={"dash": "dot", "color": colour_of.get(width, "#555555"), "width": 1.5}, **where)
        fig.add_annotation(xref="x domain", yref="y domain", x=0.01, y=0.99, showarrow=False, xanchor="left",
                           text=f"optimum drift: lr* ∝ {axis}^{drift:+.2f} (0 = transfers)", **where)
    anchor = placed.filter(pl.col("width") == stable_from) if stable_from is not None else None
    if anchor is not None and anchor.height:
        x = 2.0 ** anchor["opt_log2_lr"][0]
        fig.add_vline(x=x, line={"color": "#111111", "width": 2}, **where)
        # Above a lone figure; inside a panel (its title is above), beside the line.
        fig.add_annotation(x=math.log10(x), xref="x", yref="y domain", y=1.0 if not where else 0.99,
                           yanchor="bottom" if not where else "top", xanchor="center" if not where else "left",
                           xshift=0 if not where else 4, showarrow=False,
                           text=f"stable from {axis} N = {stable_from}: lr* 2^{anchor['opt_log2_lr'][0]:.2f}",
                           **where)


def shift_figure(shifts: Mapping[str, pl.DataFrame], *, tolerance: float,
                 stable_from: Mapping[str, int | None] | None = None, title: str | None = None,
                 axis: str = "width") -> go.Figure:
    """The shift of the optimal learning rate per doubling of width, against width: does it die out?
    (Per doubling of depth, against depth, with ``axis`` ``depth``.)

    ``shifts``: one ``SweepReport.shifts`` frame per sweep, keyed by its label (an SP and a μP sweep
    overlaid show SP's shift staying near −1 while μP's falls into the band). Each shift sits at the
    geometric middle of its two widths, with its 90 % interval (``shift_ci``); hollow markers are shifts
    the data cannot place on either side of the tolerance. The shaded band is ±``tolerance``;
    ``stable_from`` draws each sweep's N as a dotted vertical line in its colour.
    """
    fig = go.Figure()
    fig.add_hrect(y0=-tolerance, y1=tolerance, fillcolor="#59A14F", opacity=0.12, line_width=0)
    fig.add_hline(y=0, line={"color": "#888888", "width": 1})
    widths: set[float] = set()
    colours = (*RUN_COLOURS, *CALM)
    for index, (label, frame) in enumerate(shifts.items()):
        colour = colours[index % len(colours)]
        widths |= set(frame["width_lo"].to_list()) | set(frame["width_hi"].to_list())
        symbols = ["circle-open" if s == "unresolved" else "circle" for s in frame["status"]]
        fig.add_trace(go.Scatter(
            x=frame["mid_width"].to_list(), y=frame["shift"].to_list(), mode="lines+markers", name=label,
            line={"color": colour}, marker={"size": 9, "symbol": symbols, "color": colour},
            error_y={"type": "data", "array": frame["shift_ci"].to_list(), "color": colour, "thickness": 1},
            hovertext=[f"{label}: {lo} → {hi}: {s:+.2f} ± {ci:.2f} log2 lr per doubling ({st})"
                       for lo, hi, s, ci, st in frame.select("width_lo", "width_hi", "shift", "shift_ci",
                                                             "status").iter_rows()],
            hoverinfo="text", meta={"run": label},
        ))
        n = (stable_from or {}).get(label)
        if n is not None:
            fig.add_vline(x=n, line={"dash": "dot", "color": colour, "width": 1.5})
            fig.add_annotation(x=math.log10(n), xref="x", yref="paper", y=1.0, yanchor="bottom", showarrow=False,
                               text=f"N = {n}" + (f" ({label})" if len(shifts) > 1 else ""), font={"color": colour})
    fig.update_xaxes(**_log2_axis(widths), title_text=f"{axis} (each shift between two consecutive {axis}s)")
    fig.update_yaxes(title_text="shift of the optimum per doubling (log2 lr)", zeroline=False)
    fig.update_layout(title=title, height=440, template="plotly_white", legend={"title": {"text": "sweep"}})
    return fig


def regret_figure(regret: pl.DataFrame, *, title: str | None = None, axis: str = "width") -> go.Figure:
    """Transfer regret against width: the loss at the transferred learning rate above that width's best,
    in percent, ± one standard error — one line per source (the proxy width's optimum, N's optimum).
    Against depth, the proxy depth's optimum, with ``axis`` ``depth``.

    ``regret``: ``SweepReport.regret``. A transferred lr next to a diverged job has an infinite regret,
    drawn as a cross at the top of the axis.
    """
    fig = go.Figure()
    finite = regret.filter(pl.col("regret_rel").is_finite())
    top = 100 * float(finite["regret_rel"].to_numpy().max()) if finite.height else 1.0
    for index, ((source, width), part) in enumerate(
            sorted(regret.partition_by("source", "source_width", as_dict=True).items(), key=lambda kv: str(kv[0]))):
        colour = (*RUN_COLOURS, *CALM)[index % (len(RUN_COLOURS) + len(CALM))]
        label = f"lr tuned at {axis} {width}" + (" (proxy)" if source == "proxy" else " (N)")
        part = part.sort("width")
        good = part.filter(pl.col("regret_rel").is_finite())
        fig.add_trace(go.Scatter(
            x=good["width"].to_list(), y=(100 * good["regret_rel"]).to_list(), mode="lines+markers", name=label,
            line={"color": colour}, error_y={"type": "data", "array": (100 * good["regret_rel_se"]).to_list(),
                                             "color": colour, "thickness": 1},
            hovertext=[f"{label} at {axis} {w}: loss {loss:.4f} vs best {best:.4f} ({100 * r:+.2f} %)"
                       for w, loss, best, r in good.select("width", "loss", "best_loss", "regret_rel").iter_rows()],
            hoverinfo="text", meta={"source": source, "source_width": width},
        ))
        bad = part.filter(pl.col("regret_rel") == math.inf)
        if bad.height:
            fig.add_trace(go.Scatter(
                x=bad["width"].to_list(), y=[top * 1.1 if top > 0 else 1.0] * bad.height, mode="markers",
                name=f"{label}: diverged", marker={"symbol": "x", "size": 11, "color": colour}, showlegend=False,
                hovertext=[f"{label} diverges at {axis} {w}" for w in bad["width"]], hoverinfo="text",
            ))
    fig.update_xaxes(**_log2_axis(regret["width"].to_list()), title_text=axis)
    fig.update_yaxes(title_text=f"loss above the {axis}'s best (%)", rangemode="tozero")
    fig.update_layout(title=title, height=400, template="plotly_white", legend={"title": {"text": "learning rate"}})
    return fig


def compare_figure(runs: Sequence[tuple[str, pl.DataFrame, pl.DataFrame | None]], *,
                   steps: Sequence[int] | None = None, title: str | None = None) -> go.Figure:
    """Any number of coord-check runs overlaid, one panel per step: ``runs`` holds ``(label, bands, fits)``
    per run (:func:`seed_bands` of one site and probe; ``Report.fits`` or None).

    Each run has its colour and dash; each layer its marker symbol, the same in every run, so the lines of
    one layer can be followed from run to run and two coinciding lines still show both markers. A legend
    entry per run and layer (``run · layer``) toggles that line in every panel; thick lines fail the check
    at that step. Only steps every run has are drawn.
    """
    available = set.intersection(*(set(drawable_steps(bands)) for _, bands, _ in runs)) if runs else set()
    shown = list(steps) if steps is not None else pick_steps(available)
    rows, cols = _panel_grid(len(shown))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"step {s}" for s in shown],
                        horizontal_spacing=0.06, vertical_spacing=0.12 if rows > 1 else 0.1)
    layers = list(dict.fromkeys(n for _, bands, _ in runs
                                for n in bands.get_column("name").unique(maintain_order=True)))
    symbol = {name: SYMBOLS[i % len(SYMBOLS)] for i, name in enumerate(layers)}
    traces: list[go.Scatter] = []
    places: list[tuple[int, int]] = []
    for index, (label, bands, fits) in enumerate(runs):
        colour, dash = RUN_COLOURS[index % len(RUN_COLOURS)], DASHES[index % len(DASHES)]
        site = bands.get_column("site")[0] if bands.height else None
        probe = bands.get_column("probe")[0] if bands.height else None
        bad = violations(fits, site, probe)
        drawn = bands.filter(pl.col("mean").is_not_null() & pl.col("step").is_in(shown))
        seen: set[str] = set()
        groups = drawn.partition_by("name", "step", as_dict=True)
        for (name, step), part in sorted(groups.items(),
                                         key=lambda kv: (layers.index(str(kv[0][0])), int(kv[0][1]))):
            violating = (str(name), int(step)) in bad
            entry = f"{label} · {WARN + ' ' if any(n == name for n, _ in bad) else ''}{name}"
            traces.append(go.Scatter(
                x=part["width"].cast(pl.Float64).to_list(), y=part["mean"].to_list(), mode="lines+markers",
                name=entry, legendgroup=f"{label}/{name}", showlegend=name not in seen,
                line={"color": colour, "dash": dash, "width": 4 if violating else 1.5},
                marker={"size": 8 if violating else 6, "symbol": symbol[str(name)], "color": colour},
                hovertext=f"{label}: {WARN + ' ' if violating else ''}{name} · step {step}", hoverinfo="text+y",
                meta={"run": label, "layer": name, "step": step, "violating": violating},
            ))
            seen.add(str(name))
            places.append(_place(shown.index(int(step)), cols))
    widths = {w for _, bands, _ in runs for w in bands.get_column("width").to_list()}
    first = runs[0][1] if runs else pl.DataFrame()
    site, probe = (first.get_column(c)[0] if first.height else "" for c in ("site", "probe"))
    _add_panels(fig, traces, places, widths, len(shown), cols, f"{probe}({site})")
    fig.update_layout(title=title, height=max(360, 320 * rows), template="plotly_white",
                      legend={"title": {"text": "run · layer"}})
    return fig
