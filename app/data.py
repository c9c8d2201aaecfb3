"""What the dashboard reads, and the only place it reads from: the runs under one root directory.

Safety: a run is chosen from the list of directories found under the root (:func:`list_runs`); no text a
visitor types or puts in the URL is ever joined to a path, so nothing outside the root can be read.
Symlinks leading out of the root are not listed.

Speed: every read is cached with ``st.cache_data`` keyed on the run's directory and a *stamp* — the names,
sizes and modification times of its ``meta.json`` and finished shards — so a page rerun costs nothing, and
a run still being written (new shards appear atomically) is re-read exactly when it changes. Rows are read
through lazy polars scans with the page's filters pushed down, so a million-row run is reduced to the few
thousand points a figure draws before anything is collected.

Damage: each shard is checked on its own; a damaged one is reported by name (:attr:`RunData.problems`)
and the others are still read.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import streamlit as st

from coordscope.config import find_pyproject
from coordscope.errors import CoordscopeError, StoreError
from coordscope.plots import seed_bands
from coordscope.report import Report
from coordscope.runmeta import META, RunMeta, read_meta
from coordscope.store import along_axis, check_shard, shard_paths

ROOT_ENV = "COORDSCOPE_RUNS_ROOT"
Stamp = tuple[tuple[str, int, int], ...]


def runs_root(argv: Sequence[str] | None = None) -> Path:
    """The runs root: ``--root DIR`` after the script's ``--`` (what ``coordscope app`` passes), else the
    ``COORDSCOPE_RUNS_ROOT`` environment variable, else ``./runs``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--root" in args[:-1]:
        return Path(args[args.index("--root") + 1]).resolve()
    return Path(os.environ.get(ROOT_ENV, "runs")).resolve()


def config_path(argv: Sequence[str] | None = None) -> Path | None:
    """The pyproject.toml to judge with: ``--config FILE`` after the script's ``--`` (what ``coordscope app
    --config`` passes), else None — the nearest pyproject.toml, exactly as ``coordscope check`` finds it."""
    args = list(sys.argv[1:] if argv is None else argv)
    return Path(args[args.index("--config") + 1]) if "--config" in args[:-1] else None


def open_first(argv: Sequence[str] | None = None) -> list[str]:
    """The runs the pages open on when neither the URL nor the session names one: every ``--open NAME``
    after the script's ``--`` (what ``coordscope app --open`` and ``coordscope demo`` pass), in order; a
    page takes the first of its kind."""
    args = list(sys.argv[1:] if argv is None else argv)
    return [args[i + 1] for i in range(len(args) - 1) if args[i] == "--open"]


@dataclass(frozen=True)
class RunEntry:
    """A run found under the root: ``name`` is its path relative to the root ("." for the root itself);
    ``kind`` is ``coordcheck`` or ``lrsweep``, or None when its ``meta.json`` is unreadable (``error``)."""

    name: str
    path: Path
    kind: str | None
    status: str | None
    error: str | None = None


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root)


def list_runs(root: Path) -> list[RunEntry]:
    """The root itself when it is a run, and every directory directly under it with a ``meta.json``
    (hidden directories and symlinks out of the root skipped), sorted by name."""
    if not root.is_dir():
        return []
    candidates = [root] + sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    entries = []
    for path in candidates:
        if not (path / META).is_file() or not _inside(path, root):
            continue
        name = "." if path == root else path.name
        try:
            meta = read_meta(path)
        except StoreError as exc:
            entries.append(RunEntry(name, path, None, None, str(exc)))
            continue
        entries.append(RunEntry(name, path, meta.kind, meta.status))
    return entries


def stamp(run_dir: Path) -> Stamp:
    """Names, sizes and mtimes of ``meta.json``, the finished shards and the pyproject.toml the verdicts
    are judged with: the cache key of a run's data and verdicts, so an edited override shows at once."""
    config = config_path() or find_pyproject()
    out = []
    for path in [run_dir / META, *shard_paths(run_dir), *([config] if config is not None else [])]:
        try:
            info = path.stat()
        except FileNotFoundError:  # replaced between listing and stat: the next rerun sees the new file
            continue
        out.append((str(path) if path == config else path.name, info.st_mtime_ns, info.st_size))
    return tuple(out)


@dataclass(frozen=True)
class RunData:
    """One coord-check run as the pages need it: its meta, the shards that can be read, what is wrong with
    the others, and the values each filter can take (``names`` in the model's order, ``roles`` by name)."""

    path: Path
    meta: RunMeta
    shards: tuple[Path, ...]
    problems: tuple[str, ...]
    sites: tuple[str, ...]
    probes: tuple[str, ...]
    names: tuple[str, ...]
    roles: dict[str, str]
    steps: tuple[int, ...]

    def scan(self) -> pl.LazyFrame:
        """A lazy scan of the readable shards (a dimension sweep's ``width`` holding that dimension)."""
        return along_axis(pl.scan_parquet([str(p) for p in self.shards], glob=False), self.meta)


@st.cache_data(show_spinner=False, max_entries=64)
def run_data(run_dir: Path, key: Stamp) -> RunData:
    """Meta, healthy shards and filter values of a coord-check run (``key``: its :func:`stamp`)."""
    meta = read_meta(run_dir)
    shards, problems = [], []
    for path in shard_paths(run_dir):
        try:
            check_shard(path)
        except StoreError as exc:
            problems.append(str(exc))
        else:
            shards.append(path)
    if not shards:
        raise StoreError(f"{run_dir}: no readable shards yet" + (f" ({len(problems)} damaged)" if problems else ""))
    # The first shard holds every name in the order the recorder met them (the model's order); the
    # distinct (name, site, probe, role) combinations of the whole run are few, whatever its row count.
    order = pl.scan_parquet(str(shards[0]), glob=False).select("name").unique(maintain_order=True).collect()["name"]
    frame = pl.scan_parquet([str(p) for p in shards], glob=False)
    combos = frame.select("name", "site", "probe", "role").unique().collect()
    steps = frame.select("step").unique().collect()["step"].sort()
    rank = {name: i for i, name in enumerate(order)}
    names = sorted(combos["name"].unique().to_list(), key=lambda n: (rank.get(n, len(rank)), n))
    return RunData(
        path=run_dir, meta=meta, shards=tuple(shards), problems=tuple(problems),
        sites=tuple(sorted(combos["site"].unique().to_list())), probes=tuple(sorted(combos["probe"].unique())),
        names=tuple(names), roles=dict(combos.select("name", "role").unique().iter_rows()),
        steps=tuple(steps.to_list()),
    )


@st.cache_data(show_spinner=False, max_entries=128)
def bands(run_dir: Path, key: Stamp, site: str, probe: str, axis: str = "width", at: int | None = None
          ) -> pl.DataFrame:
    """:func:`coordscope.plots.seed_bands` of one site and probe of a run, read with the filter pushed down.

    ``axis`` "depth" (a depth sweep): the layers matched across depths (``blocks.{last}``, …) with depth as
    the abscissa, at width ``at`` (default the smallest); "width" with ``at`` set: the rows at depth ``at``."""
    rows = run_data(run_dir, key).scan().filter((pl.col("site") == site) & (pl.col("probe") == probe))
    if axis == "depth":
        from coordscope.depth import depth_axis_rows

        rows = depth_axis_rows(rows, width=at)
    elif at is not None:
        rows = rows.filter(pl.col("depth") == at)
    return seed_bands(rows, site=site, probe=probe)


@st.cache_data(show_spinner=False, max_entries=64)
def report(run_dir: Path, key: Stamp, probe: str) -> tuple[Report | None, str | None]:
    """The check's verdicts for one probe, or why there are none (too few widths yet, a damaged shard):
    ``(report, None)`` or ``(None, message)``. Runs still being written are judged on what is there, with
    the same ``[tool.coordscope]`` as ``coordscope check`` (:func:`config_path`)."""
    from coordscope.checking import check_run

    try:
        return check_run(run_dir, config=config_path(), allow_incomplete=True, probe=probe), None
    except CoordscopeError as exc:
        return None, str(exc)


@st.cache_data(show_spinner=False, max_entries=32)
def sweep(run_dir: Path, key: Stamp, metric: str, axis: str | None = None,
          at: int | None = None) -> tuple[Any, pl.DataFrame]:
    """The LR sweep's analysis (a ``SweepReport``) and its loss curves (:func:`coordscope.plots.sweep_curves`),
    for the judgement across ``axis`` at ``at`` (:func:`judgements`; None: the sweep's first)."""
    from coordscope.plots import sweep_curves
    from coordscope.transfer import analyse_sweep, report_losses

    report = analyse_sweep(run_dir, metric=metric, config=config_path(), axis=axis, at=at)
    return report, sweep_curves(report_losses(run_dir, report))


@st.cache_data(show_spinner=False, max_entries=32)
def judgements(run_dir: Path, key: Stamp) -> list[tuple[str, int | None]]:
    """What the sweep can be judged across (``coordscope.transfer.judgements``): one ``("width", None)``
    for a width sweep; across depth per width, and across width per depth, for a depth sweep."""
    from coordscope.transfer import judgements as of
    from coordscope.transfer import load_sweep

    return of(load_sweep(run_dir))
