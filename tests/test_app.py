"""Every page of the Streamlit dashboard through Streamlit's AppTest, on real recorded runs: the figures'
data (traces, axis types, highlighted layers), the verdicts, damaged files, runs still being written, and
that nothing outside the runs root can be reached."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from streamlit.testing.v1 import AppTest

import coordscope.app
from coordscope import plots
from coordscope.app.data import ROOT_ENV
from coordscope.cli import main
from coordscope.cli.app import LOCALHOST, streamlit_command
from coordscope.lrsweep import sweep
from coordscope.runmeta import read_meta, write_meta
from coordscope.store import shard_paths

MAIN = str(Path(coordscope.app.__file__).parent / "main.py")
TIMEOUT = 120  # seconds per script run: generous, the test machines are small and shared


@pytest.fixture(scope="module")
def root(mlp_runs: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs root with copies of the SP and μP MLP runs and a tiny real LR sweep."""
    root = tmp_path_factory.mktemp("app-root")
    for name in ("mlp-sp", "mlp-mup"):
        shutil.copytree(mlp_runs[name], root / name)
    sweep("mlp-mup", widths=[32, 64], lrs=[2.0**-10, 2.0**-7, 2.0**-4], steps=4, seeds=1, out=root / "sweep",
          eval_batches=1)
    return root


def _app(monkeypatch: pytest.MonkeyPatch, root: Path, page: str | None = None, **query: str) -> AppTest:
    monkeypatch.setenv(ROOT_ENV, str(root))
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.query_params.update(query)
    at.run()
    if page is not None:
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _figures(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _lines(figure: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in figure["data"] if t.get("meta")]


def _axes(figure: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for k, v in figure["layout"].items() if k.startswith(("xaxis", "yaxis"))]


def test_coord_check_page_marks_the_sp_run_s_violating_layers(monkeypatch, root) -> None:
    at = _app(monkeypatch, root, run="mlp-sp")
    assert at.sidebar.selectbox(key="run-coordcheck").value == "mlp-sp"
    assert at.selectbox(key="cc-site").value == "act_delta" and at.selectbox(key="cc-probe").value == "rms"
    assert at.error[0].value.startswith("FAIL") and "hidden.0 (act_delta)" in at.error[0].value
    (figure,) = _figures(at)
    assert all(axis["type"] == "log" for axis in _axes(figure))
    assert [a["text"] for a in figure["layout"]["annotations"]] == [f"step {s}" for s in range(1, 6)]
    flagged = {t["meta"]["layer"] for t in _lines(figure) if t["meta"]["violating"]}
    assert {"hidden.0", "hidden.1", "readout", "<output>"} <= flagged and "input" not in flagged
    assert {t["name"] for t in _lines(figure) if t["meta"]["violating"]} == {f"{plots.WARN} {n}" for n in flagged}
    assert plots.WARN in at.caption[-1].value


def test_coord_check_page_shows_the_mup_run_flat_and_unmarked(monkeypatch, root) -> None:
    at = _app(monkeypatch, root, run="mlp-mup")
    assert at.success[0].value.startswith("PASS")
    (figure,) = _figures(at)
    lines = _lines(figure)
    assert {t["meta"]["layer"] for t in lines} == {"input", "hidden.0", "hidden.1", "readout", "<output>"}
    assert not any(t["meta"]["violating"] for t in lines)
    assert not any(t.get("name", "").startswith(plots.WARN) for t in figure["data"])


def test_coord_check_filters_site_role_layer_and_step(monkeypatch, root) -> None:
    at = _app(monkeypatch, root, run="mlp-sp")
    at.selectbox(key="cc-site").set_value("act").run()
    at.multiselect(key="cc-act-roles").set_value(["hidden"]).run()
    assert at.multiselect(key="cc-act-layers").value == ["hidden.0", "hidden.1"]
    at.multiselect(key="cc-act-layers").set_value(["hidden.1"]).run()
    at.multiselect(key="cc-steps-act").set_value([0, 3]).run()
    (figure,) = _figures(at)
    assert {(t["meta"]["layer"], t["meta"]["step"]) for t in _lines(figure)} == {("hidden.1", 0), ("hidden.1", 3)}
    assert [a["text"] for a in figure["layout"]["annotations"]] == ["step 0", "step 3"]
    assert "rms(act)" in figure["layout"]["title"]["text"]


def test_switching_site_keeps_a_chart_and_the_sites_own_steps(monkeypatch, root) -> None:
    at = _app(monkeypatch, root, run="mlp-sp")
    assert at.multiselect(key="cc-steps-act_delta").value == [1, 2, 3, 4, 5]  # act_delta has no step 0
    for site in ("param", "param_grad", "param_update", "loss", "act", "act_delta"):
        at.selectbox(key="cc-site").set_value(site).run()
        assert not at.exception, [e.message for e in at.exception]
        assert len(_figures(at)) == 1, f"no chart after switching to {site}"
        assert at.multiselect(key=f"cc-{site}-layers").value, site
    at.selectbox(key="cc-site").set_value("act").run()
    assert 0 in at.multiselect(key="cc-steps-act").value  # the step that matters for act


def test_slopes_page_colours_slopes_by_verdict_beside_the_findings(monkeypatch, root) -> None:
    at = _app(monkeypatch, root, "slopes", run="mlp-sp")
    (figure,) = _figures(at)
    heatmap = figure["data"][0]
    assert heatmap["type"] == "heatmap"
    assert {label.split(" · ")[1] for label in heatmap["y"]} == {
        "act", "act_delta", "act_grad", "param_update", "param_update [rel_rms]", "param_update [rel_spectral]"}
    verdicts = list(plots.VERDICT_COLOURS)
    row = heatmap["y"].index("hidden.0 · act_delta")
    assert verdicts[heatmap["z"][row][heatmap["x"].index("1")]] == "exploding"
    findings = at.dataframe[0].value
    assert "hidden.0" in set(findings["layer"]) and findings["cause"].str.len().min() > 0
    assert {"verdict", "failing steps"} <= set(findings.columns)
    assert at.markdown, "the diagnoses are listed"
    assert "param_update [rel_spectral]" in set(findings["site"])  # a weight's update relative to it
    at.multiselect(key="sl-sites").set_value(["act"]).run()
    (figure,) = _figures(at)
    assert {label.split(" · ")[1] for label in figure["data"][0]["y"]} == {"act"}


def test_slopes_page_of_the_mup_run_has_no_findings(monkeypatch, root) -> None:
    at = _app(monkeypatch, root, "slopes", run="mlp-mup")
    assert any("No findings" in s.value for s in at.success)
    heatmap = _figures(at)[0]["data"][0]
    verdicts = list(plots.VERDICT_COLOURS)
    assert {verdicts[z] for row in heatmap["z"] for z in row if z is not None} <= {"flat", "not judged"}


def test_lr_sweep_page_draws_one_curve_per_width_and_the_optima(monkeypatch, root) -> None:
    at = _app(monkeypatch, root, "lr_sweep")
    assert at.sidebar.selectbox(key="run-lrsweep").options == ["sweep"]
    figure, shifts, *_ = _figures(at)
    names = [t.get("name") for t in figure["data"]]
    assert "width 32" in names and "width 64" in names and "optimum" in names
    assert figure["layout"]["xaxis"]["type"] == "log"
    assert [t["name"] for t in shifts["data"]] == ["sweep"]
    banner = (at.success or at.error or at.warning)[0].value
    assert banner.startswith(("TRANSFERS", "DOES NOT TRANSFER", "INCONCLUSIVE")) and " · " in banner
    assert list(at.dataframe[0].value["width"]) == [32, 64]


def test_lr_sweep_page_sets_an_sp_and_a_mup_sweep_side_by_side_with_readable_columns(monkeypatch, root,
                                                                                     tmp_path) -> None:
    shutil.copytree(root / "sweep", tmp_path / "sweep-mup")
    sweep("mlp-sp", widths=[32, 64], lrs=[2.0**-10, 2.0**-7, 2.0**-4], steps=4, seeds=1, out=tmp_path / "sweep-sp",
          eval_batches=1, progress=False)
    at = _app(monkeypatch, tmp_path, "lr_sweep", run="sweep-sp")
    assert at.sidebar.multiselect(key="lr-overlay").value == ["sweep-mup"]
    panels, shifts, *_ = _figures(at)
    runs = [t["meta"]["run"] for t in panels["data"] if t.get("meta", {}).get("run")]
    assert list(dict.fromkeys(runs)) == ["sweep-sp", "sweep-mup"]  # the chosen sweep on the left
    assert {t["xaxis"] for t in panels["data"]} == {"x", "x2"} and panels["layout"]["xaxis2"]["matches"] == "x"
    titles = [a["text"] for a in panels["layout"]["annotations"]]
    assert any(t.startswith("sweep-sp · ") for t in titles) and any(t.startswith("sweep-mup · ") for t in titles)
    legend = [t["name"] for t in panels["data"] if t.get("showlegend") is not False]
    assert legend.count("width 32") == 1  # one legend entry per width, toggling it in both panels
    assert [t["name"] for t in shifts["data"]] == ["sweep-sp", "sweep-mup"]
    columns = json.loads(at.dataframe[0].proto.columns)
    assert columns["opt_log2_lr"]["label"] == "optimal log2 lr"
    assert columns["bracketed"]["label"] == "optimum inside the grid"
    assert "opt_log2_lr" in at.dataframe[0].value.columns  # the data keep their names; only the display changes
    at.sidebar.multiselect(key="lr-overlay").set_value([]).run()
    alone = _figures(at)[0]
    assert {t.get("meta", {}).get("run") for t in alone["data"]} == {None} and "xaxis2" not in alone["layout"]


def test_pages_open_on_the_run_the_app_was_told_to_open(monkeypatch, root) -> None:
    monkeypatch.setattr(sys, "argv", ["main.py", "--root", str(root), "--open", "mlp-sp", "--open", "sweep"])
    at = _app(monkeypatch, root)
    assert at.sidebar.selectbox(key="run-coordcheck").value == "mlp-sp"
    assert at.error[0].value.startswith("FAIL: ")  # the failing SP run's verdict, first thing on the page
    at.switch_page("views/lr_sweep.py").run()
    assert at.sidebar.selectbox(key="run-lrsweep").value == "sweep"
    at.switch_page("views/coord_check.py").run()
    assert at.sidebar.selectbox(key="run-coordcheck").value == "mlp-sp"
    chosen = _app(monkeypatch, root, run="mlp-mup")  # the URL still wins
    assert chosen.sidebar.selectbox(key="run-coordcheck").value == "mlp-mup"


def test_compare_page_overlays_any_number_of_runs_with_their_metadata(monkeypatch, root, tmp_path) -> None:
    for name in ("mlp-sp", "mlp-mup"):
        shutil.copytree(root / name, tmp_path / name)
    shutil.copytree(root / "mlp-mup", tmp_path / "mlp-mup-again")
    at = _app(monkeypatch, tmp_path, "compare")
    assert at.sidebar.multiselect(key="cmp-runs").value == ["mlp-mup", "mlp-mup-again"]
    at.sidebar.multiselect(key="cmp-runs").set_value(["mlp-sp", "mlp-mup", "mlp-mup-again"]).run()
    (figure,) = _figures(at)
    lines = _lines(figure)
    assert {t["meta"]["run"] for t in lines} == {"mlp-sp", "mlp-mup", "mlp-mup-again"}
    assert any(t["meta"]["violating"] for t in lines if t["meta"]["run"] == "mlp-sp")
    assert not any(t["meta"]["violating"] for t in lines if t["meta"]["run"] != "mlp-sp")
    assert "mlp-mup · hidden.0" in {t["name"] for t in lines}
    meta = at.dataframe[0].value
    assert list(meta.columns) == ["setting", "mlp-sp", "mlp-mup", "mlp-mup-again"]
    assert meta.set_index("setting").loc["spec"].tolist() == ["mlp-sp", "mlp-mup", "mlp-mup"]


def test_a_damaged_shard_is_named_and_the_rest_still_shows(monkeypatch, root, tmp_path) -> None:
    shutil.copytree(root / "mlp-sp", tmp_path / "mlp-sp")
    damaged = shard_paths(tmp_path / "mlp-sp")[0]
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    at = _app(monkeypatch, tmp_path)
    problems = [e.value for e in at.error if "damaged" in e.value]
    assert len(problems) == 1 and damaged.name in problems[0]
    (figure,) = _figures(at)
    assert _lines(figure), "the figure is drawn from the other shards"


def test_a_damaged_meta_is_named_and_the_other_runs_still_show(monkeypatch, root, tmp_path) -> None:
    shutil.copytree(root / "mlp-mup", tmp_path / "mlp-mup")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "meta.json").write_text("{not json")
    at = _app(monkeypatch, tmp_path)
    assert any("broken" in e.value and "meta.json" in e.value and "not valid JSON" in e.value for e in at.sidebar.error)
    assert at.sidebar.selectbox(key="run-coordcheck").options == ["mlp-mup"]
    assert _lines(_figures(at)[0])


def test_a_run_still_being_written_is_shown_with_what_is_there(monkeypatch, root, tmp_path) -> None:
    run = tmp_path / "live"
    shutil.copytree(root / "mlp-sp", run)
    for shard in shard_paths(run):
        if "-w512-" in shard.name:
            shard.rename(run / f".{shard.name}.123.tmp")  # as a job that is still writing leaves it
    write_meta(run, replace(read_meta(run), status="running"))
    at = _app(monkeypatch, tmp_path)
    assert any("'running'" in w.value and "9 of 12 jobs" in w.value for w in at.warning)
    (figure,) = _figures(at)
    assert figure["layout"]["xaxis"]["tickvals"] == [64, 128, 256]
    # the last job lands: the next rerun reads it (the cache is keyed on the shards on disk)
    for tmp in run.glob(".shard-*.tmp"):
        tmp.rename(run / tmp.name[1:].rsplit(".", 2)[0])
    write_meta(run, replace(read_meta(run), status="complete"))
    at.run()
    assert not at.warning
    assert _figures(at)[0]["layout"]["xaxis"]["tickvals"] == [64, 128, 256, 512]


def test_nothing_outside_the_runs_root_is_reachable(monkeypatch, root, tmp_path) -> None:
    inside = tmp_path / "root"
    inside.mkdir()
    shutil.copytree(root / "mlp-mup", inside / "mlp-mup")
    outside = tmp_path / "secret-run"
    shutil.copytree(root / "mlp-sp", outside)
    (inside / "escape").symlink_to(outside, target_is_directory=True)
    for attempt in ("../secret-run", str(outside), "escape", "mlp-mup/../../secret-run"):
        at = _app(monkeypatch, inside, run=attempt)
        select = at.sidebar.selectbox(key="run-coordcheck")
        assert select.options == ["mlp-mup"] and select.value == "mlp-mup"
        assert any("Ignored ?run=" in w.value for w in at.sidebar.warning)
        assert str(outside) not in json.dumps(_figures(at)) and not any(str(outside) in c.value for c in at.caption)


def test_app_command_refuses_a_missing_runs_directory(tmp_path) -> None:
    result = CliRunner().invoke(main, ["app", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "does not exist" in result.output and len(result.output.strip().splitlines()) == 1


def test_app_command_serves_on_localhost_by_default(tmp_path) -> None:
    command = streamlit_command(tmp_path, port=8999, host=LOCALHOST)
    assert command[command.index("--server.address") + 1] == "127.0.0.1"
    assert command[-2:] == ["--root", str(tmp_path)]
    assert Path(command[command.index("run") + 1]) == Path(MAIN).resolve()


def test_app_command_refuses_to_open_a_run_that_is_not_there(tmp_path) -> None:
    result = CliRunner().invoke(main, ["app", str(tmp_path), "--open", "nope"])
    assert result.exit_code == 2
    assert "--open nope" in result.output and len(result.output.strip().splitlines()) == 1
    command = streamlit_command(tmp_path, port=8999, host=LOCALHOST, open_runs=["mlp-sp", "sweep"])
    assert command[-6:] == ["--root", str(tmp_path), "--open", "mlp-sp", "--open", "sweep"]


def test_demo_records_sp_and_mup_and_keeps_complete_runs(tmp_path) -> None:
    argv = ["demo", "--runs", str(tmp_path), "--no-app", "--no-sweep"]
    first = CliRunner().invoke(main, argv)
    assert first.exit_code == 0, first.output
    assert "mlp-sp: FAIL: " in first.output and "regime: SP-like" in first.output
    assert "mlp-mup: PASS: " in first.output and "regime: μP-like" in first.output
    assert "gpt-depth-unscaled: FAIL: " in first.output and "regime: unscaled branches" in first.output
    assert "gpt-completep: PASS: " in first.output
    assert {p.name for p in tmp_path.iterdir()} == {"mlp-sp", "mlp-mup", "gpt-depth-unscaled", "gpt-completep"}
    assert f"coordscope app {tmp_path} --open mlp-sp" in first.output  # the failing SP run first
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/shard-*.parquet")}
    second = CliRunner().invoke(main, argv)
    assert second.exit_code == 0 and second.output.count("complete, kept") == 4
    assert stamps == {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/shard-*.parquet")}


# --- depth sweeps ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def depth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Depth sweeps of the CompleteP sample and of the same GPT without branch scaling, at one width, and a
    CompleteP run over two widths and two depths."""
    import coordscope

    root = tmp_path_factory.mktemp("depth-root")
    grid = {"widths": [32], "depths": [2, 4, 8], "steps": 2, "seeds": 1, "progress": False}
    coordscope.run("gpt-completep", out=root / "completep", **grid)
    coordscope.run("gpt-depth-unscaled", out=root / "unscaled", **grid)
    coordscope.run("gpt-completep", out=root / "both", **{**grid, "widths": [32, 64], "depths": [2, 4]})
    return root


def _x_values(figure: dict[str, Any]) -> set[float]:
    return {x for t in _lines(figure) for x in t["x"]}


def test_a_depth_sweep_is_drawn_against_depth_with_layers_matched_across_depths(monkeypatch, depth_root) -> None:
    at = _app(monkeypatch, depth_root, run="unscaled")
    assert not at.sidebar.radio  # one width: nothing to choose, depth is the axis
    at.selectbox(key="cc-site").set_value("act").run()
    (figure,) = _figures(at)
    assert _x_values(figure) == {2, 4, 8}
    assert {a["title"]["text"] for a in _axes(figure) if a.get("title", {}).get("text") in ("width", "depth")} == {
        "depth"}
    layers = {t["meta"]["layer"] for t in _lines(figure)}
    assert {"blocks.{first}", "blocks.{last}", "<output>"} <= layers and "blocks.7" not in layers
    # without branch scaling the residual stream grows with depth: flagged, as the check says
    assert "blocks.{last}" in {t["meta"]["layer"] for t in _lines(figure) if t["meta"]["violating"]}
    assert at.sidebar.multiselect(key="cc-depth-act-layers").value


def test_a_dimension_sweep_is_drawn_against_that_dimension(monkeypatch, tmp_path) -> None:
    """A sweep of d_ff alone (one width): the x axis is d_ff, its values are d_ff's, and the layer that sums over
    d_ff in the SP sample is flagged, as the check says."""
    import coordscope

    coordscope.run("dims-sp", dim="d_ff=64,128,256", steps=2, seeds=1, out=tmp_path / "ffn", progress=False)
    at = _app(monkeypatch, tmp_path, run="ffn")
    assert not at.sidebar.radio
    (figure,) = _figures(at)
    assert _x_values(figure) == {64, 128, 256}
    assert {a["title"]["text"] for a in _axes(figure) if a.get("title", {}).get("text") in ("width", "d_ff")} == {
        "d_ff"}
    assert "mlp.c_proj" in {t["meta"]["layer"] for t in _lines(figure) if t["meta"]["violating"]}
    assert at.error[0].value.startswith("FAIL")


def test_a_run_over_widths_and_depths_is_drawn_along_either_axis(monkeypatch, depth_root) -> None:
    at = _app(monkeypatch, depth_root, run="both")
    assert at.sidebar.radio(key="cc-axis").value == "depth"
    assert at.sidebar.selectbox(key="cc-at-width").options == ["32", "64"]
    (figure,) = _figures(at)
    assert _x_values(figure) == {2, 4} and "at width 32" in figure["layout"]["title"]["text"]
    at.sidebar.radio(key="cc-axis").set_value("width").run()
    at.sidebar.selectbox(key="cc-at-depth").set_value(4).run()
    (figure,) = _figures(at)
    assert _x_values(figure) == {32, 64} and "at depth 4" in figure["layout"]["title"]["text"]
    assert {"blocks.3", "<output>"} <= set(at.sidebar.multiselect(key="cc-width-act_delta-layers").options)
    assert not any("{" in t["meta"]["layer"] for t in _lines(figure))  # real names at one depth
