"""Coord check: the size of every layer's activations (or gradients, updates, …) against width, one panel
per step — flat lines under μP, lines fanning out where a layer violates it (drawn thick and red)."""

import polars as pl
import streamlit as st

from coordscope import plots
from coordscope.app import data, ui

st.title("Coord check")
entry, key, run = ui.chosen_coordcheck()
site = ui.choose("Site", run.sites, "act_delta", key="cc-site")
probe = ui.choose("Probe", run.probes, "rms", key="cc-probe")
report, why = data.report(entry.path, key, probe)
ui.verdict_banner(report, why)
fits = report.fits if report is not None else None
bands = data.bands(entry.path, key, site, probe)
violating = {name for name, _ in plots.violations(fits, site, probe)}
recorded = set(bands["name"].unique().to_list())
# Each site has its own names and steps (parameters vs modules; act_delta has no step 0), so the layer and
# step selections are kept per site: switching site never leaves a stale, empty selection behind.
layers = ui.layer_filter(run, [n for n in run.names if n in recorded], violating, key=f"cc-{site}")
available = plots.drawable_steps(bands.filter(pl.col("name").is_in(layers)))
steps = st.sidebar.multiselect("Steps", available, default=plots.pick_steps(available), key=f"cc-steps-{site}")
shown = bands.filter(pl.col("name").is_in(layers))
if shown.is_empty() or not steps:
    st.info("Nothing to draw: choose at least one layer and one step with positive values.")
    st.stop()
figure = plots.coord_check_figure(shown, fits, steps=sorted(steps), order=run.names,
                                  title=f"{run.meta.run} · {probe}({site})")
st.plotly_chart(figure, key="coord-check")
flagged = sorted(violating & set(layers))
st.caption(
    "x: width, y: size (both log), one y range for all panels. Line: geometric mean over seeds; band: smallest to "
    "largest seed; dotted grey: the flat line μP expects, dash-dot: ∝ width for scale. "
    + (f"{plots.WARN} thick, in warm colours: fails the check at that step ({', '.join(flagged)})." if flagged
       else "No shown layer fails the check at this site.")
)
