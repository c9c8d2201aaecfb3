"""Slopes: the fitted exponent of width for every layer and step, coloured by verdict, beside the findings
with their likely causes and fixes."""

import polars as pl
import streamlit as st

from coordscope import plots
from coordscope.app import data, ui

st.title("Slopes")
entry, key, run = ui.chosen_coordcheck()
probe = ui.choose("Probe", run.probes, "rms", key="sl-probe")
report, why = data.report(entry.path, key, probe)
ui.verdict_banner(report, why)
if report is None:
    st.stop()
fit_sites = sorted(report.fits["site"].unique().to_list())
judged_sites = sorted(report.fits.filter(pl.col("judged"))["site"].unique().to_list())
sites = st.sidebar.multiselect("Sites", fit_sites, default=judged_sites or fit_sites, key="sl-sites")
# the chosen probe's fits, and the judged ones derived from others (a weight's update relative to it)
fits = report.fits.filter(pl.col("site").is_in(sites) & ((pl.col("probe") == probe) | pl.col("judged")))
if not run.meta.depths:
    axis = "width"
elif len(run.meta.widths) < 2:
    axis = "depth"
else:
    axis = "depth (fits named '@ depth L': along width, at that depth)"
st.plotly_chart(plots.slope_heatmap(fits, order=run.names, title=f"slope of log2(size) per doubling of {axis}"),
                key="slopes")
# Full width, one line per finding, the cause in its own column: side by side with the heatmap the
# verdict and hint columns were cut off.
st.subheader("Findings")
if report.findings:
    st.dataframe(
        pl.DataFrame([{"": plots.WARN if f.severity == "error" else "", "layer": f.name,
                       "site": f.site if f.probe == probe else f"{f.site} [{f.probe}]",
                       "worst step": f.step, "slope": f.slope, "±": f.stderr, "verdict": f.verdict,
                       "failing steps": ", ".join(map(str, f.steps)), "cause": f.rule or f.hint}
                      for f in report.findings]),
        hide_index=True, key="findings", use_container_width=True,
        column_config={"slope": st.column_config.NumberColumn(format="%+.2f"),
                       "±": st.column_config.NumberColumn(format="%.2f"),
                       "cause": st.column_config.TextColumn(width="large")},
    )
else:
    st.success("No findings: every judged layer is within tolerance.")
for diagnosis in report.diagnoses:
    st.markdown(f"**{diagnosis.title}** (`{diagnosis.rule}`): {', '.join(diagnosis.layers)}  \n"
                f"fix: {diagnosis.hint}")
if report.optimizer_family is not None:
    st.subheader("Hyperparameters")
    st.caption(f"The hidden updates measured **{report.optimizer_family}** (from how their size follows the "
               "gradient and the learning rate — never from the optimizer's name).")
    for note in report.notes:
        st.warning(f"{note.role} {note.key}: {note.message} ({', '.join(note.names)})")
    if not report.notes:
        st.success("Learning rates and ε scale as μP's rule for these updates asks.")
    if report.hyperparameters is not None and not report.hyperparameters.is_empty():
        st.dataframe(report.hyperparameters.rename({"value": "at smallest width", "slope": "slope in width"}),
                     hide_index=True, key="hyperparameters", use_container_width=True)
