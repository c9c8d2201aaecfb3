"""Coord check: the size of every layer's activations (or gradients, updates, …) against width — or depth, in
a depth sweep — one panel per step: flat lines under μP, lines fanning out where a layer violates it (drawn
thick and red)."""

import polars as pl
import streamlit as st

from coordscope import depth, plots
from coordscope.app import data, ui

st.title("Coord check")
entry, key, run = ui.chosen_coordcheck()
site = ui.choose("Site", run.sites, "act_delta", key="cc-site")
probe = ui.choose("Probe", run.probes, "rms", key="cc-probe")
report, why = data.report(entry.path, key, probe)
ui.verdict_banner(report, why)
# A depth sweep is drawn against depth (layers matched across depths: blocks.{first}, {mid}, {last}); one
# that sweeps width too is drawn along either axis, at one value of the other, with that view's fits.
axis, at, other = ui.axis_view(run, key="cc")
fits = depth.fits_at(report.fits, other) if report is not None else None
bands = data.bands(entry.path, key, site, probe, axis, at)
violating = {name for name, _ in plots.violations(fits, site, probe)}
recorded = bands["name"].unique().to_list()
roles = dict(bands.select("name", "role").unique().iter_rows())
# Each site has its own names and steps (parameters vs modules; act_delta has no step 0), so the layer and
# step selections are kept per site and axis: switching never leaves a stale, empty selection behind.
view = site if run.meta.depths is None else f"{axis}-{site}"
layers = ui.layer_filter(run, ui.model_order(run.names, recorded), violating, key=f"cc-{view}", roles=roles)
available = plots.drawable_steps(bands.filter(pl.col("name").is_in(layers)))
steps = st.sidebar.multiselect("Steps", available, default=plots.pick_steps(available), key=f"cc-steps-{view}")
shown = bands.filter(pl.col("name").is_in(layers))
if shown.is_empty() or not steps:
    st.info("Nothing to draw: choose at least one layer and one step with positive values.")
    st.stop()
figure = plots.coord_check_figure(shown, fits, steps=sorted(steps), order=ui.model_order(run.names, recorded),
                                  title=f"{run.meta.run} · {probe}({site})" + (f" at {other}" if other else ""))
if axis != "width":
    figure = plots.label_axis(figure, axis)
st.plotly_chart(figure, key="coord-check")
flagged = sorted(violating & set(layers))
st.caption(
    f"x: {axis}, y: size (both log), one y range for all panels. Line: geometric mean over seeds; band: smallest to "
    "largest seed; dotted grey: the flat line μP expects, dash-dot: ∝ width for scale. "
    + (f"{plots.WARN} thick, in warm colours: fails the check at that step ({', '.join(flagged)})." if flagged
       else "No shown layer fails the check at this site.")
)
