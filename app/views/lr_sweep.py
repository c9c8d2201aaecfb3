"""LR sweep: loss against learning rate, one curve per width (TP5's Fig. 1) with the width N from which the
optimum is stable — side by side with the other sweeps under the root, so that an SP sweep's sliding optima
and a μP sweep's lined-up ones sit next to each other on the same axes; the shift of the optimum per
doubling of width, overlaid the same way; and the regret of transferring the proxy width's learning rate.
A depth sweep is drawn the same way with depth as the series (one curve per depth, at one width: a picker
chooses the width, or switches to the judgement across width at one depth)."""

from pathlib import Path
from typing import Any

import polars as pl
import streamlit as st

from coordscope import plots
from coordscope.app import data, ui
from coordscope.errors import CoordscopeError
from coordscope.runmeta import read_meta

MAX_OVERLAY = 3  # other sweeps shown beside this one by default; more make the figures unreadable

# Display names of the analysis tables' columns (the frames keep theirs: they are the JSON contract).
COLUMNS: dict[str, tuple[str, str | None, str]] = {
    "width": ("width", None, ""),
    "opt_log2_lr": ("optimal log2 lr", "%.2f", "the width's optimal learning rate, log2 (mean over seeds)"),
    "opt_se": ("± s.e.", "%.2f", "standard error of the optimum: the larger of the seeds' and the flatness'"),
    "spread": ("seed spread", "%.2f", "standard deviation of the seeds' optima"),
    "opt_min": ("lowest seed optimum", "%.2f", ""),
    "opt_max": ("highest seed optimum", "%.2f", ""),
    "seed_se": ("s.e. from seeds", "%.2f", "spread / √seeds (empty with one seed)"),
    "flat_se": ("s.e. from flatness", "%.2f", "how far the optimum can move given the loss's noise and curvature"),
    "loss_se": ("loss noise", "%.4f", "standard error of a loss near the optimum"),
    "curvature": ("curvature", "%.4f", "c in loss ≈ a + c·(log2 lr − optimum)²"),
    "bracketed": ("optimum inside the grid", None, "every seed's lowest loss lies inside the lr grid, not at its edge"),
    "best_loss": ("best loss", "%.4f", "lowest mean loss on the grid"),
    "diverged": ("diverged jobs", None, ""),
    "jobs": ("jobs", None, ""),
    "width_lo": ("from width", None, ""),
    "width_hi": ("to width", None, ""),
    "mid_width": ("drawn at width", "%.1f", "geometric middle of the two widths"),
    "shift": ("shift per doubling", "%+.2f", "how far the optimal log2 lr moves per doubling of width"),
    "shift_se": ("± s.e.", "%.2f", ""),
    "shift_ci": ("± 90 % interval", "%.2f", ""),
    "status": ("against tolerance", None, "within, beyond, or unresolved (not placed on either side)"),
    "source": ("lr tuned at", None, "proxy: the proxy width; stable_from: N"),
    "source_width": ("tuned at width", None, ""),
    "log2_lr": ("log2 lr used", "%.2f", ""),
    "loss": ("loss there", "%.4f", ""),
    "regret": ("regret", "%.4f", "loss above the width's best"),
    "regret_rel": ("regret (relative)", "%.4f", "regret / best loss"),
    "regret_se": ("regret ± s.e.", "%.4f", ""),
    "regret_rel_se": ("relative regret ± s.e.", "%.4f", ""),
}


def table(frame: pl.DataFrame, key: str) -> None:
    """One of the analysis frames with readable column names (display only)."""
    config: dict[str, Any] = {}
    for column in frame.columns:
        label, fmt, helptext = COLUMNS.get(column, (column, None, ""))
        label, helptext = label.replace("width", AXIS), helptext.replace("width", AXIS)
        if frame.schema[column] == pl.Boolean:
            config[column] = st.column_config.CheckboxColumn(label, help=helptext or None)
        elif frame.schema[column].is_numeric():
            config[column] = st.column_config.NumberColumn(label, format=fmt, help=helptext or None)
        else:
            config[column] = st.column_config.TextColumn(label, help=helptext or None)
    st.dataframe(frame, hide_index=True, key=key, column_config=config)


st.title("LR sweep")
entry = ui.pick_run("lrsweep")
if entry is None:
    st.stop()
key = data.stamp(entry.path)
metric = ui.choose("Loss", ["heldout", "train"], "heldout", key="lr-metric")
try:
    judged = {f"{a}" + ("" if at is None else f" at {'width' if a == 'depth' else 'depth'} {at}"): (a, at)
              for a, at in data.judgements(entry.path, key)}
    picked = ui.choose("Across", list(judged), next(iter(judged)), key="lr-axis") if len(judged) > 1 \
        else next(iter(judged))
    sweep, curves = data.sweep(entry.path, key, metric, *judged[picked])
except CoordscopeError as exc:
    st.error(str(exc))
    st.stop()
AXIS = sweep.axis
ui.show_status(read_meta(entry.path), entry.path)
banner = st.success if sweep.ok else st.warning if sweep.verdict == "inconclusive" else st.error
banner(sweep.headline)
if sweep.hint:
    st.info(f"Hint: {sweep.hint}")
for warning in sweep.warnings:
    st.warning(warning)



def same_axis(path: Path) -> bool:
    """Whether the sweep at ``path`` is judged along this one's axis first: a width sweep's curves beside a
    depth sweep's would share colours, not meaning. A sweep that cannot be read is kept, to say why below."""
    try:
        return data.judgements(path, data.stamp(path))[0][0] == AXIS
    except CoordscopeError:
        return True


others = [e for e in data.list_runs(data.runs_root())
          if e.kind == "lrsweep" and e.name != entry.name and same_axis(e.path)]
beside = st.sidebar.multiselect("Show beside it", [e.name for e in others],
                                default=[e.name for e in others[:MAX_OVERLAY]], key="lr-overlay",
                                help="Other sweeps drawn next to this one (loss curves) and over it (shifts).")
compared = []
for other in (e for e in others if e.name in beside):
    try:
        report, other_curves = data.sweep(other.path, data.stamp(other.path), metric)
    except CoordscopeError as exc:
        st.warning(f"{other.name}: not shown beside it ({exc})")
        continue
    compared.append((other.name, report, other_curves))

if compared:
    panels = [plots.SweepPanel(name, c, r.optima, r.stable_from, r.label)
              for name, r, c in [(entry.name, sweep, curves), *compared]]
    st.plotly_chart(plots.lr_sweep_panels(panels, title=f"{metric} loss against learning rate, per {AXIS}",
                                          axis=AXIS), key="lr-sweep")
    st.caption("Side by side on the same axes (Tensor Programs V, Figure 1): where each width's optimum sits. "
               "Under SP with Adam the optimum slides to smaller learning rates as the width grows; under μP "
               "the stars line up, so a learning rate tuned on a narrow model is right for a wide one.")
else:
    st.plotly_chart(plots.lr_sweep_figure(curves, sweep.optima, stable_from=sweep.stable_from, axis=AXIS,
                                          title=f"{sweep.run} · {metric} loss" + (
                                              "" if AXIS == "width" else f" per depth{sweep.where}")),
                    key="lr-sweep")
st.caption(f"Stars: each {AXIS}'s optimal learning rate (parabola through the best grid point and its neighbours, "
           f"mean over seeds); crosses: diverged jobs. Dashed, faint curves: {AXIS}s below N, the {AXIS} from which "
           "the optimum is stable; the solid vertical line is N's optimum.")
table(sweep.optima, "optima")

# Labelled by the runs' names under the root, as the selectors name them.
shifts, stable = {entry.name: sweep.shifts}, {entry.name: sweep.stable_from}
for name, report, _ in compared:
    shifts[name], stable[name] = report.shifts, report.stable_from
st.subheader("Does the shift of the optimum die out?")
st.plotly_chart(plots.shift_figure(shifts, tolerance=sweep.tolerance, stable_from=stable, axis=AXIS,
                                   title=f"shift of the optimal lr per doubling of {AXIS}"), key="lr-shifts")
st.caption(f"Each point: how far the optimum moves between two consecutive {AXIS}s, per doubling, with its 90 % "
           f"interval (seeds and the loss's flatness); hollow: not placed on either side of the tolerance. Band: "
           f"±{sweep.tolerance:g}. Under μP the shift falls into the band (from N on); under SP it stays near −1. "
           f"Trend of this sweep: {sweep.trend.shape}.")
table(sweep.shifts, "shifts")
if not sweep.regret.is_empty():
    st.subheader("What transferring costs")
    st.plotly_chart(plots.regret_figure(sweep.regret, title="transfer regret", axis=AXIS), key="lr-regret")
    st.caption(f"The loss at the learning rate tuned at the proxy {AXIS} {sweep.proxy_width}"
               + (f" (and at N = {sweep.stable_from})" if sweep.stable_from not in (None, sweep.proxy_width) else "")
               + f", above each {AXIS}'s own best loss.")
    table(sweep.regret, "regret")
