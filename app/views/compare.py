"""Compare: two coord-check runs overlaid — typically before and after a fix — with their verdicts and
the metadata that says whether they are comparable."""

import polars as pl
import streamlit as st

from coordscope import plots
from coordscope.app import data, ui
from coordscope.runmeta import RunMeta

st.title("Compare")
first = ui.pick_run("coordcheck", label="Run A")
second = ui.pick_run("coordcheck", label="Run B", key="cmp-b", exclude=first.name) if first else None
opened_a = ui.open_run(first, notices=False) if first is not None else None
opened_b = ui.open_run(second, notices=False) if second is not None else None
if first is None or second is None or opened_a is None or opened_b is None:
    st.stop()
(key_a, run_a), (key_b, run_b) = opened_a, opened_b
for run in (run_a, run_b):
    for problem in run.problems:
        st.error(f"Skipped a damaged shard — {problem}")
sites = [s for s in run_a.sites if s in run_b.sites]
probes = [p for p in run_a.probes if p in run_b.probes]
if not sites or not probes:
    st.error("These runs share no site and probe: nothing to overlay.")
    st.stop()
site = ui.choose("Site", sites, "act_delta", key="cmp-site")
probe = ui.choose("Probe", probes, "rms", key="cmp-probe")
reports = [data.report(first.path, key_a, probe), data.report(second.path, key_b, probe)]
bands = [data.bands(first.path, key_a, site, probe), data.bands(second.path, key_b, site, probe)]
columns = st.columns(2)
for column, entry, (report, why) in zip(columns, (first, second), reports, strict=True):
    with column:
        st.markdown(f"**{entry.name}**")
        ui.verdict_banner(report, why)
common = sorted(set(plots.drawable_steps(bands[0])) & set(plots.drawable_steps(bands[1])))
steps = st.sidebar.multiselect("Steps", common, default=plots.pick_steps(common), key="cmp-steps")
if not steps:
    st.info("Choose at least one step the two runs share.")
    st.stop()
fits = [r.fits if r is not None else None for r, _ in reports]
st.plotly_chart(plots.compare_figure(bands[0], bands[1], fits[0], fits[1], labels=(first.name, second.name),
                                     steps=sorted(steps), title=f"{probe}({site})"), key="compare")
st.caption(f"{first.name}: dashed, warm; {second.name}: solid, cool; thick: fails the check at that step.")

st.subheader("Metadata")
KEYS = ("spec", "widths", "seeds", "steps", "lr", "optimizer", "probes", "device", "dtype", "status", "created")


def _column(meta: RunMeta) -> list[str]:
    data = meta.to_json()
    cells = [", ".join(map(str, v)) if isinstance(v := data.get(key), list) else ("" if v is None else str(v))
             for key in KEYS]
    return cells + [meta.versions.get(v, "") for v in ("coordscope", "torch")]


table = pl.DataFrame({"setting": [*KEYS, "coordscope", "torch"], first.name: _column(run_a.meta),
                      second.name: _column(run_b.meta)})
st.dataframe(table, hide_index=True, key="metadata")
