"""LR sweep: loss against learning rate, one curve per width (TP5's Fig. 1) with the width N from which the
optimum is stable; the shift of the optimum per doubling of width — overlaid with the other sweeps under the
root, so that an SP sweep's steady shift and a μP sweep's dying one sit side by side — and the regret of
transferring the proxy width's learning rate."""

import streamlit as st

from coordscope import plots
from coordscope.app import data, ui
from coordscope.errors import CoordscopeError
from coordscope.runmeta import read_meta

MAX_OVERLAY = 3  # other sweeps overlaid by default on the shift figure; more make it unreadable

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
banner = st.success if sweep.ok else st.warning if sweep.verdict == "inconclusive" else st.error
banner(sweep.headline)
if sweep.hint:
    st.info(f"Hint: {sweep.hint}")
for warning in sweep.warnings:
    st.warning(warning)
st.plotly_chart(plots.lr_sweep_figure(curves, sweep.optima, stable_from=sweep.stable_from,
                                      title=f"{sweep.run} · {metric} loss"), key="lr-sweep")
st.caption("Stars: each width's optimal learning rate (parabola through the best grid point and its neighbours, "
           "mean over seeds); crosses: diverged jobs. Dashed, faint curves: widths below N, the width from which "
           "the optimum is stable; the solid vertical line is N's optimum.")
st.dataframe(sweep.optima, hide_index=True, key="optima")

others = [e for e in data.list_runs(data.runs_root()) if e.kind == "lrsweep" and e.name != entry.name]
overlay = st.sidebar.multiselect("Overlay the shifts of", [e.name for e in others],
                                 default=[e.name for e in others[:MAX_OVERLAY]], key="lr-overlay")
shifts, stable = {sweep.run: sweep.shifts}, {sweep.run: sweep.stable_from}
for other in (e for e in others if e.name in overlay):
    try:
        report, _ = data.sweep(other.path, data.stamp(other.path), metric)
    except CoordscopeError as exc:
        st.warning(f"{other.name}: not overlaid ({exc})")
        continue
    shifts[report.run], stable[report.run] = report.shifts, report.stable_from
st.subheader("Does the shift of the optimum die out?")
st.plotly_chart(plots.shift_figure(shifts, tolerance=sweep.tolerance, stable_from=stable,
                                   title="shift of the optimal lr per doubling of width"), key="lr-shifts")
st.caption(f"Each point: how far the optimum moves between two consecutive widths, per doubling, with its 90 % "
           f"interval (seeds and the loss's flatness); hollow: not placed on either side of the tolerance. Band: "
           f"±{sweep.tolerance:g}. Under μP the shift falls into the band (from N on); under SP it stays near −1. "
           f"Trend of this sweep: {sweep.trend.shape}.")
st.dataframe(sweep.shifts, hide_index=True, key="shifts")
if not sweep.regret.is_empty():
    st.subheader("What transferring costs")
    st.plotly_chart(plots.regret_figure(sweep.regret, title="transfer regret"), key="lr-regret")
    st.caption(f"The loss at the learning rate tuned at the proxy width {sweep.proxy_width}"
               + (f" (and at N = {sweep.stable_from})" if sweep.stable_from not in (None, sweep.proxy_width) else "")
               + ", above each width's own best loss.")
    st.dataframe(sweep.regret, hide_index=True, key="regret")
