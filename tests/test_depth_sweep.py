"""Depth LR sweeps (`coordscope sweep --depths`): the store gains a depth column, each depth's optimum and
its drift per doubling of depth are judged like the width sweep's, each axis at a fixed value of the other;
width sweeps and their old stores read as before; bad input is one line, exit 2; the HTML report and the
dashboard draw one curve per depth."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apppage import open_page
from click.testing import CliRunner
from streamlit.testing.v1 import AppTest

from coordscope.cli import main
from coordscope.errors import ConfigError, SpecError
from coordscope.htmlreport import write_html_report
from coordscope.lrsweep import DEPTH_SCHEMA, SCHEMA, shard_name, sweep
from coordscope.runmeta import JobRecord, RunMeta, read_meta, write_meta
from coordscope.store import ShardWriter
from coordscope.transfer import analyse_sweep, analyse_sweeps, judgements, load_sweep

GRID = [float(x) for x in range(-11, -3)]  # log2 lr −11..−4
SEEDS = [0, 1, 2]
DEPTHS = [2, 4, 8, 16]
Optimum = Callable[[int, int], float]  # (width, depth) → the optimal log2 lr


def write_sweep(run_dir: Path, opt: Optimum, widths: Sequence[int], depths: Sequence[int] | None,
                seeds: Sequence[int] = SEEDS, grid: Sequence[float] = GRID) -> Path:
    """A complete sweep store with held-out loss 2 + 0.05·(log2 lr − opt(width, depth))² + noise per job:
    with ``depths``, a depth sweep's (depth column, depth in the shard names and the jobs); without, a width
    sweep's shards as they were before depth sweeps existed (no depth column at all)."""
    rng = np.random.default_rng(0)
    run_dir.mkdir(parents=True)
    jobs = []
    for width in widths:
        for depth in depths or [None]:
            for index, x in enumerate(grid):
                for seed in seeds:
                    center = opt(width, depth or 1)
                    value = 2.0 + 0.05 * (x - center) ** 2 + rng.normal(0, 0.002)
                    columns = {"run": [run_dir.name] * 2, "width": [width] * 2, "seed": [seed] * 2,
                               "lr": [2.0**x] * 2, "step": [0, 1], "split": ["train", "heldout"],
                               "loss": [value + 0.3, value], "diverged": [False] * 2}
                    if depth is not None:
                        columns["depth"] = [depth] * 2
                    table = pa.table(columns, schema=SCHEMA if depth is None else DEPTH_SCHEMA)
                    name = shard_name(width, index, seed, depth)
                    with ShardWriter(run_dir, run_dir.name, width, seed, name, schema=table.schema) as writer:
                        writer.write_table(table)
                        writer.commit()
                    jobs.append(JobRecord(width, seed, name, 2.0**x, depth))
    write_meta(run_dir, RunMeta(kind="lrsweep", run=run_dir.name, spec="synthetic", widths=tuple(widths),
                                seeds=tuple(seeds), steps=1, jobs=tuple(jobs), status="complete",
                                lrs=tuple(2.0**x for x in grid), depths=None if depths is None else tuple(depths)))
    return run_dir


def completep(width: int, depth: int) -> float:
    return -7.0  # the optimum stays put in depth (and in width: μP)


def unscaled(width: int, depth: int) -> float:
    return -7.0 - 0.7 * math.log2(depth / 2)  # it falls 0.7 log2 units per doubling of depth


# --- recording -------------------------------------------------------------------------------------------

def test_a_depth_sweep_records_a_depth_column_and_judges_across_depth(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    result = CliRunner().invoke(main, ["sweep", "gpt-completep-sweep", "--widths", "16", "--depths", "1,2",
                                       "--lrs", "2^-8,2^-6,2^-4", "--steps", "3", "--seeds", "1",
                                       "--executor", "inline", "--out", str(out)])
    assert result.exit_code == 1, result.output  # two depths: one shift, inconclusive by design
    assert "across depth at width 16" in result.stdout and "only 2 depth(s)" in result.stdout
    assert "add depths (at least 3" in result.stdout
    meta = read_meta(out)
    assert meta.depths == (1, 2) and meta.widths == (16,)
    assert {(j.width, j.depth) for j in meta.jobs} == {(16, 1), (16, 2)} and len(meta.jobs) == 6
    assert {p.name for p in out.glob("shard-*")} == {f"shard-w16-d{d}-lr{i}-s0.parquet" for d in (1, 2)
                                                      for i in range(3)}
    frame = load_sweep(out)
    assert frame.schema["depth"].is_integer() and set(frame["depth"].unique()) == {1, 2}
    assert pq.read_schema(next(out.glob("shard-*"))).names == DEPTH_SCHEMA.names


def test_depths_come_from_the_spec_s_sweep_defaults(tmp_path: Path) -> None:
    from coordscope.config import Config
    from coordscope.settings import resolve_sweep

    settings = resolve_sweep("gpt-completep-sweep", config=Config())
    assert settings.depths == (2, 4, 8, 16) and settings.widths == (64,)
    settings = resolve_sweep("gpt-completep-sweep", config=Config(sweep={"depths": [2, 4, 8]}))
    assert settings.depths == (2, 4, 8)
    assert resolve_sweep("gpt-mup-sweep", config=Config()).depths is None  # width sweeps stay width sweeps
    assert resolve_sweep("mlp-mup", config=Config(), depths=[1, 2]).widths == (128,)


# --- judging ---------------------------------------------------------------------------------------------

def test_a_depth_constant_optimum_transfers_with_its_drift_per_doubling_of_depth(tmp_path: Path) -> None:
    report = analyse_sweep(write_sweep(tmp_path / "s", completep, [64], DEPTHS))
    assert (report.axis, report.at) == ("depth", 64)
    assert report.optima["width"].to_list() == DEPTHS  # the swept size, a depth here
    assert np.allclose(report.optima["opt_log2_lr"].to_numpy(), -7.0, atol=0.1)
    assert report.verdict == "transfers" and report.ok and abs(report.drift) < 0.05
    assert report.label == "TRANSFERS" and report.headline.startswith("TRANSFERS across depth at width 64 · ")
    text = report.render()
    assert "shift of the optimum per doubling of depth" in text and "log2 lr per doubling of depth" in text
    assert json.loads(report.render("json"))["axis"] == "depth"


def test_an_optimum_falling_with_depth_does_not_transfer(tmp_path: Path) -> None:
    run = write_sweep(tmp_path / "s", unscaled, [64], DEPTHS)
    report = analyse_sweep(run)
    assert np.allclose(report.optima["opt_log2_lr"].to_numpy(), [unscaled(64, d) for d in DEPTHS], atol=0.1)
    assert report.verdict == "does not transfer" and not report.ok
    assert report.drift == pytest.approx(-0.7, abs=0.05) and report.drift_stderr < 0.05
    assert "rescaled with depth" in report.hint
    result = CliRunner().invoke(main, ["sweep", str(run)])
    assert result.exit_code == 1 and "DOES NOT TRANSFER across depth at width 64" in result.stdout


def test_an_optimum_at_the_grid_s_edge_is_inconclusive_and_says_how_to_widen_it(tmp_path: Path) -> None:
    run = write_sweep(tmp_path / "s", lambda w, d: -7.0 - 1.5 * math.log2(d / 2), [64], DEPTHS)
    report = analyse_sweep(run)
    assert report.verdict == "inconclusive" and "depth 16" in report.reason and "edge of the lr grid" in report.reason
    assert report.hint == "widen the lr grid toward smaller learning rates"
    assert CliRunner().invoke(main, ["sweep", str(run)]).exit_code == 1


def test_with_both_axes_varying_each_is_judged_at_fixed_other(tmp_path: Path) -> None:
    # The optimum is constant in depth but falls one log2 unit per doubling of width (SP-like).
    run = write_sweep(tmp_path / "s", lambda w, d: -6.0 - math.log2(w / 32), [32, 64, 128], [2, 4, 8])
    assert judgements(load_sweep(run)) == [("depth", 32), ("depth", 64), ("depth", 128),
                                           ("width", 2), ("width", 4), ("width", 8)]
    reports = analyse_sweeps(run)
    assert [r.verdict for r in reports] == ["transfers"] * 3 + ["does not transfer"] * 3
    for report in reports[:3]:
        assert report.optima["opt_log2_lr"].to_numpy() == pytest.approx(-6.0 - math.log2(report.at / 32), abs=0.1)
    result = CliRunner().invoke(main, ["sweep", str(run), "--format", "json"])
    data = json.loads(result.stdout)
    assert result.exit_code == 1 and data["ok"] is False
    assert [(r["axis"], r["at"]) for r in data["reports"]] == [("depth", 32), ("depth", 64), ("depth", 128),
                                                               ("width", 2), ("width", 4), ("width", 8)]
    with pytest.raises(ConfigError, match="cannot judge this sweep across depth at 256"):
        analyse_sweep(run, axis="depth", at=256)


def test_width_sweeps_and_their_old_stores_read_as_before(tmp_path: Path) -> None:
    run = write_sweep(tmp_path / "old", lambda w, d: -7.0, [64, 128, 256, 512], None)
    assert "depth" not in pq.read_schema(next(run.glob("shard-*"))).names  # as stores were before depth sweeps
    assert judgements(load_sweep(run)) == [("width", None)]
    report = analyse_sweep(run)
    assert (report.axis, report.at, report.verdict) == ("width", None, "transfers")
    text = report.render()
    assert text.splitlines()[0].endswith("(optimum of the heldout loss)")  # no "across …": unchanged
    assert "per doubling of width" in text and "depth" not in text
    result = CliRunner().invoke(main, ["sweep", str(run), "--format", "json"])
    data = json.loads(result.stdout)
    assert result.exit_code == 0 and data["verdict"] == "transfers" and "reports" not in data  # one object
    with pytest.raises(ConfigError, match="cannot judge this sweep across depth"):
        analyse_sweep(run, axis="depth")


# --- bad input -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (["mlp-mup", "--depths", "2,4"], "a depth sweep calls model(width, depth)"),
    (["gpt-completep-sweep", "--depths", "4"], "at least two depths"),
    (["gpt-completep-sweep", "--depths", "4,2"], "depths must be increasing"),
    (["gpt-completep-sweep", "--depths", "0,2"], "depths must be positive"),
    (["gpt-completep-sweep", "--depths", "2,x"], "--depths"),
])
def test_bad_depth_sweeps_are_one_line_exit_2_and_leave_nothing(args: list[str], message: str,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "never"
    result = CliRunner().invoke(main, ["sweep", *args, "--lrs", "2^-8,2^-6,2^-4", "--steps", "2",
                                       "--executor", "inline", "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output
    assert not out.exists()


def test_a_recorded_sweep_refuses_depths_and_the_api_raises_clearly(tmp_path: Path) -> None:
    run = write_sweep(tmp_path / "s", completep, [64], DEPTHS)
    result = CliRunner().invoke(main, ["sweep", str(run), "--depths", "2,4"])
    assert result.exit_code == 2 and "--depths applies only when sweeping a spec" in result.output
    with pytest.raises(SpecError, match="model"):
        sweep("mlp-mup", depths=[2, 4], lrs=[1e-3, 1e-2, 1e-1], steps=1, out=tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


# --- drawing ---------------------------------------------------------------------------------------------

def test_the_html_report_draws_one_curve_per_depth(tmp_path: Path) -> None:
    run = write_sweep(tmp_path / "s", unscaled, [64], DEPTHS)
    html = write_html_report(run, tmp_path / "report.html").read_text()
    for depth in DEPTHS:
        assert f'"name":"depth {depth}"' in html
    assert "shift of the optimal lr per doubling of depth at width 64" in html
    assert "heldout loss across depth at width 64" in html and "DOES NOT TRANSFER across depth" in html


def test_the_dashboard_draws_a_depth_sweep_with_depth_as_the_series(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    write_sweep(tmp_path / "deep", unscaled, [32, 64], DEPTHS, seeds=[0, 1])
    write_sweep(tmp_path / "wide", completep, [32, 64, 128], None, seeds=[0, 1])
    at = open_page(monkeypatch, tmp_path, "deep", "lr_sweep")
    assert at.sidebar.selectbox(key="run-lrsweep").value == "deep"
    assert at.sidebar.multiselect(key="lr-overlay").options == []  # a width sweep is not drawn beside it
    across = at.sidebar.selectbox(key="lr-axis")
    assert across.options == ["depth at width 32", "depth at width 64", "width at depth 2", "width at depth 4",
                              "width at depth 8", "width at depth 16"]
    figures = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    curves, shifts = figures[0], figures[1]
    names = [t.get("name") for t in curves["data"] if t.get("mode") == "lines+markers"]
    assert names == [f"depth {d}" for d in DEPTHS]
    assert curves["layout"]["legend"]["title"]["text"] == "depth"
    assert "depth" in curves["layout"]["title"]["text"] and "per doubling of depth" in shifts["layout"]["title"]["text"]
    assert shifts["layout"]["xaxis"]["title"]["text"].startswith("depth")
    assert at.error[0].value.startswith("DOES NOT TRANSFER across depth at width 32")
    assert json.loads(at.dataframe[0].proto.columns)["width"]["label"] == "depth"
    across.set_value("width at depth 4").run()
    names = [t.get("name") for t in _first(at)["data"] if t.get("mode") == "lines+markers"]
    assert names == ["width 32", "width 64"]


def _first(at: AppTest) -> dict:
    return json.loads(at.get("plotly_chart")[0].proto.spec)
