"""LR sweep: loss against learning rate, one curve per width, each width's optimum and the drift of the
optimum with width — μTransfer holds when the optima line up."""

import streamlit as st

from coordscope import plots
from coordscope.app import data, ui
from coordscope.errors import CoordscopeError
from coordscope.runmeta import read_meta

st.title("LR sweep")
entry = ui.pick_run("lrsweep")
if entry is None:
    st.stop()
key = data.stamp(entry.path)
metric = ui.choose("Loss", ["heldout", "train"], "heldout", key="lr-metric")
try:
    sweep, curves = data.sweep(entry.path, key, metric)
except CoordscopeError as exc:
    st.error(str(exc))
    st.stop()
ui.show_status(read_meta(entry.path), entry.path)
(st.success if sweep.transfers else st.error)(sweep.headline)
for warning in sweep.warnings:
    st.warning(warning)
st.plotly_chart(plots.lr_sweep_figure(curves, sweep.optima, drift=sweep.drift,
                                      title=f"{sweep.run} · {metric} loss"), key="lr-sweep")
st.caption("Stars: each width's optimal learning rate (parabola through the best grid point and its neighbours, "
           "mean over seeds); dotted lines: the fitted drift. Crosses: diverged jobs.")
st.dataframe(sweep.optima, hide_index=True, key="optima")
