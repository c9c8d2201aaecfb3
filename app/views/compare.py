"""Compare: any number of coord-check runs overlaid — before and after a fix, SP against μP — with their
verdicts and the metadata that says whether they are comparable."""

import polars as pl
import streamlit as st

from coordscope import plots
from coordscope.app import data, ui
from coordscope.runmeta import RunMeta

st.title("Compare")
entries = [e for e in data.list_runs(data.runs_root()) if e.kind == "coordcheck"]
names = [e.name for e in entries]
if len(names) < 2:
    st.info("Compare needs at least two coord-check runs under the runs root. Record them with "
            "`coordscope run SPEC --out DIR`, or try `coordscope demo`.")
    st.stop()
chosen = st.sidebar.multiselect("Runs", names, default=names[:2], key="cmp-runs")
if len(chosen) < 2:
    st.info("Choose two or more runs to overlay.")
    st.stop()
picked = [entries[names.index(name)] for name in chosen]
opened = [ui.open_run(entry, notices=False) for entry in picked]
if any(o is None for o in opened):
    st.stop()
runs = [(entry, key, run) for entry, (key, run) in zip(picked, [o for o in opened if o is not None], strict=True)]
contents = [run for _entry, _key, run in runs]
for problem in (p for run in contents for p in run.problems):
    st.error(f"Skipped a damaged shard — {problem}")
sites = [s for s in contents[0].sites if all(s in run.sites for run in contents)]
probes = [p for p in contents[0].probes if all(p in run.probes for run in contents)]
if not sites or not probes:
    st.error("These runs share no site and probe: nothing to overlay.")
    st.stop()
site = ui.choose("Site", sites, "act_delta", key="cmp-site")
probe = ui.choose("Probe", probes, "rms", key="cmp-probe")
reports = [data.report(entry.path, key, probe) for entry, key, _ in runs]
bands = [data.bands(entry.path, key, site, probe) for entry, key, _ in runs]
for column, name, (report, why) in zip(st.columns(len(runs)), chosen, reports, strict=True):
    with column:
        st.markdown(f"**{name}**")
        ui.verdict_banner(report, why)
common = sorted(set.intersection(*(set(plots.drawable_steps(b)) for b in bands)))
steps = st.sidebar.multiselect("Steps", common, default=plots.pick_steps(common), key=f"cmp-steps-{site}")
if not steps:
    st.info("Choose at least one step the runs share.")
    st.stop()
overlay = [(name, b, report.fits if report is not None else None)
           for name, b, (report, _why) in zip(chosen, bands, reports, strict=True)]
st.plotly_chart(plots.compare_figure(overlay, steps=sorted(steps), title=f"{probe}({site})"), key="compare")
st.caption("One colour and dash per run, one marker per layer (the same in every run); thick: fails the check at "
           "that step. The legend names run · layer: click one to hide it in every panel.")

st.subheader("Metadata")
KEYS = ("spec", "widths", "seeds", "steps", "lr", "optimizer", "probes", "device", "dtype", "status", "created")


def _column(meta: RunMeta) -> list[str]:
    data = meta.to_json()
    cells = [", ".join(map(str, v)) if isinstance(v := data.get(key), list) else ("" if v is None else str(v))
             for key in KEYS]
    return cells + [meta.versions.get(v, "") for v in ("coordscope", "torch")]


table = pl.DataFrame({"setting": [*KEYS, "coordscope", "torch"],
                      **{name: _column(run.meta) for name, run in zip(chosen, contents, strict=True)}})
st.dataframe(table, hide_index=True, key="metadata")
