"""The widgets and notices every page shares: the run picker, the filters, the verdict banner, the
run's status and its damaged shards. Pages compose these; :mod:`coordscope.app.data` does the reading."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import streamlit as st

from coordscope.app import data
from coordscope.errors import CoordscopeError
from coordscope.report import Report
from coordscope.runmeta import RunMeta

CHOSEN = "coordscope-run"  # session key under which each page's chosen run is remembered across pages
MAX_LAYERS = 16  # default number of layers drawn; more lines than this are unreadable (the rest are a click away)


def pick_run(kind: str, label: str = "Run", key: str | None = None,
             exclude: str | None = None) -> data.RunEntry | None:
    """The run selector: a selectbox over the runs of ``kind`` under the root, preselected from the URL's
    ``?run=`` when that names one of them (anything else in the URL is ignored, and said so), else the run
    chosen earlier in this session, else the first of ``coordscope app --open`` of this kind, else the
    first by name. Unreadable runs are named with their problem. Returns None, after saying why, when
    there is nothing to show.

    The page's main selector (``key`` None) follows and sets ``?run=``; a second one (Compare) does not.
    """
    root = data.runs_root()
    entries = data.list_runs(root)
    if key is None:
        for broken in (e for e in entries if e.error is not None):
            st.sidebar.error(f"{broken.name}: {broken.error}")
    runs = [e for e in entries if e.kind == kind and e.name != exclude]
    if not runs:
        what = "LR sweep" if kind == "lrsweep" else "coord-check"
        how = "`coordscope sweep`" if kind == "lrsweep" else "`coordscope run SPEC --out DIR`"
        st.info(f"No {'other ' if exclude else ''}{what} runs under {root}. Record one with {how}, "
                "or try `coordscope demo`.")
        return None
    names = [e.name for e in runs]
    index = 0
    remembered = f"{CHOSEN}-{kind}"  # not a widget key: Streamlit drops widget state on a page switch
    if key is None:
        asked = st.query_params.get("run")
        if asked and not any(e.name == asked for e in entries):
            st.sidebar.warning(f"Ignored ?run={asked!r}: not a run under the runs root.")
        # The URL's run, else this session's choice, else the run the app was told to open on (--open).
        wanted = next((n for n in (asked, st.session_state.get(remembered), *data.open_first()) if n in names), None)
        if wanted is not None:
            index = names.index(wanted)
    choice = st.sidebar.selectbox(label, names, index=index, key=key or f"run-{kind}")
    if key is None:
        st.query_params["run"] = choice
        st.session_state[remembered] = choice
    return runs[names.index(choice)]


def open_run(entry: data.RunEntry, *, notices: bool = True) -> tuple[data.Stamp, data.RunData] | None:
    """The run's cache stamp and data; its status and damaged shards are shown (``notices``). A run that
    cannot be read at all is named with its problem, and None returned."""
    key = data.stamp(entry.path)
    try:
        run = data.run_data(entry.path, key)
    except CoordscopeError as exc:
        st.error(str(exc))
        return None
    if notices:
        show_status(run.meta, entry.path)
        for problem in run.problems:
            st.error(f"Skipped a damaged shard — {problem}")
    return key, run


def chosen_coordcheck() -> tuple[data.RunEntry, data.Stamp, data.RunData]:
    """The page's coord-check run — chosen, opened, its status shown — or the page stops here, having
    said why there is nothing to show."""
    entry = pick_run("coordcheck")
    opened = open_run(entry) if entry is not None else None
    if entry is None or opened is None:
        st.stop()
    key, run = opened
    return entry, key, run


def axis_view(run: data.RunData, key: str) -> tuple[str, int | None, str | None]:
    """Which axis a coord-check page draws: ``(axis, at, other)``. A width check: ("width", None, None). A
    depth sweep at one width: ("depth", None, None). One that sweeps both: a sidebar choice of the axis
    and of the other axis's value, ``other`` naming it as the fits do ("width 64", "depth 8")."""
    depths, widths = run.meta.depths or (), run.meta.widths
    if run.meta.axis() is not None:  # a dimension sweep: drawn against that dimension (RunData.scan)
        return str(run.meta.axis()), None, None
    if not depths:
        return "width", None, None
    if len(widths) < 2:
        return "depth", None, None
    axis = str(st.sidebar.radio("Axis", ["depth", "width"], key=f"{key}-axis", horizontal=True))
    held, values = ("width", widths) if axis == "depth" else ("depth", depths)
    at = int(st.sidebar.selectbox(f"At {held}", list(values), key=f"{key}-at-{held}"))
    return axis, at, f"{held} {at}"


def model_order(names: Sequence[str], shown: Iterable[str]) -> list[str]:
    """``shown`` in the model's order (``names``: the recorded names in that order). A name matched across
    depths (``blocks.{last}.mlp``) takes the place of the recorded name it stands for: the first, middle
    or last of those it matches."""
    rank = {name: i for i, name in enumerate(names)}

    def place(name: str) -> tuple[int, str]:
        if name in rank:
            return rank[name], name
        pattern = re.compile(re.sub(r"\\\{(first|mid|last)\\\}", r"\\d+", re.escape(name)) + "$")
        found = [i for n, i in rank.items() if pattern.match(n)]
        if not found:
            return len(rank), name
        pick = 0 if "{first}" in name else -1 if "{last}" in name else len(found) // 2
        return found[pick], name

    return sorted(shown, key=place)


def show_status(meta: RunMeta, path: Path) -> None:
    """One caption of what the run is, and a warning while it is still being written or was cut short."""
    lr = meta.lr if meta.lr is not None else ", ".join(f"{x:g}" for x in meta.lrs or ())
    depths = f" · depths {','.join(map(str, meta.depths))}" if meta.depths else ""
    st.caption(f"spec `{meta.spec}` · widths {','.join(map(str, meta.widths))}{depths} · seeds {len(meta.seeds)} · "
               f"steps {meta.steps} · {meta.optimizer or '?'} lr {lr} · `{path}`")
    if meta.status != "complete":
        done = sum((path / job.shard).is_file() for job in meta.jobs)
        st.warning(f"Run status {meta.status!r}: {done} of {len(meta.jobs)} jobs recorded so far; what is here is "
                   "shown. Rerun the page (R) to pick up new shards.")


def choose(label: str, options: Sequence[str], preferred: str, key: str) -> str:
    """A sidebar selectbox preselecting ``preferred`` when it is one of ``options``."""
    index = list(options).index(preferred) if preferred in options else 0
    return str(st.sidebar.selectbox(label, list(options), index=index, key=key))


def verdict_banner(report: Report | None, why: str | None) -> None:
    """The check's headline: pass (green) or the number of failing layer sites and the regime (red)."""
    if report is None:
        st.info(f"No verdicts for this run: {why}")
        return
    errors = sorted({(f.name, f.site) for f in report.errors})
    (st.success if report.ok else st.error)(
        report.headline + ("" if report.ok else ": " + ", ".join(f"{name} ({site})" for name, site in errors)))


def layer_filter(run: data.RunData, names: Sequence[str], violating: set[str], key: str,
                 roles: Mapping[str, str] | None = None) -> list[str]:
    """Role and layer multiselects. By default every role but the loss and, of those layers, the violating
    ones first, up to :data:`MAX_LAYERS`; the caption says when some are left out. ``roles``: of ``names``
    (default the run's, by recorded name)."""
    role_of = run.roles if roles is None else roles
    all_roles = sorted({role_of.get(n, "unknown") for n in names})
    default_roles = [r for r in all_roles if r != "loss"] or all_roles
    chosen_roles = st.sidebar.multiselect("Roles", all_roles, default=default_roles, key=f"{key}-roles")
    candidates = [n for n in names if role_of.get(n, "unknown") in chosen_roles]
    ranked = sorted(candidates, key=lambda n: n not in violating)  # stable: model order within each group
    default = [n for n in candidates if n in set(ranked[:MAX_LAYERS])]
    layers = st.sidebar.multiselect("Layers", candidates, default=default, key=f"{key}-layers")
    if len(default) < len(candidates) and set(layers) == set(default):
        st.caption(f"Showing {len(default)} of {len(candidates)} layers (violating ones first); "
                   "add more under Layers in the sidebar.")
    return list(layers)
