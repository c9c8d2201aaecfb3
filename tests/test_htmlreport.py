"""``coordscope report``: one self-contained HTML file (plotly.js inlined once, nothing fetched) with the
figures and the verdict table, and PNG figures rendered by kaleido in the local Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from coordscope.cli import main
from coordscope.htmlreport import write_html_report
from coordscope.lrsweep import sweep

PLOTLY_BANNER = re.compile(r"\* plotly\.js v\d+\.\d+\.\d+")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _figures(page: str) -> list[dict]:
    """The figure specs passed to Plotly.newPlot, as JSON."""
    specs = re.findall(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*(\{.*?\}),\s*\{"displaylogo"', page, re.S)
    return [{"data": json.loads(data), "layout": json.loads(layout)} for data, layout in specs]


def test_sp_report_is_self_contained_with_figures_and_verdicts(mlp_runs, tmp_path: Path) -> None:
    out = write_html_report(mlp_runs["mlp-sp"], tmp_path / "sp.html")
    page = out.read_text(encoding="utf-8")
    assert "<h2>Hyperparameters</h2>" in page and "measured <b>Adam-like</b>" in page and "hidden lr" in page
    assert len(PLOTLY_BANNER.findall(page)) == 1, "plotly.js inlined exactly once"
    assert not re.search(r"<script[^>]+src=", page), "no external script"
    assert not re.search(r"<link[^>]+href=\"http", page)
    figures = _figures(page)
    assert len(figures) == 3  # act_delta and act coord checks, slope heatmap
    titles = [f["layout"]["title"]["text"] for f in figures]
    assert titles[:2] == ["coord check · rms(act_delta)", "coord check · rms(act)"]
    violating = {t["meta"]["layer"] for t in figures[0]["data"] if t.get("meta", {}).get("violating")}
    assert {"hidden.0", "readout"} <= violating
    assert figures[0]["layout"]["xaxis"]["type"] == "log" and figures[0]["layout"]["yaxis"]["type"] == "log"
    assert figures[2]["data"][0]["type"] == "heatmap"
    assert "FAIL: " in page and "regime: SP-like" in page
    verdicts = page[page.index("<h2>Verdicts"):]
    assert "<td>hidden.0</td><td>act_delta</td>" in verdicts and "<td>exploding</td>" in verdicts
    assert 'class="error"' in verdicts


def test_mup_report_passes(mlp_runs, tmp_path: Path) -> None:
    page = write_html_report(mlp_runs["mlp-mup"], tmp_path / "mup.html").read_text(encoding="utf-8")
    assert "PASS: " in page and "regime: μP-like" in page and "No findings" in page
    assert not any(t.get("meta", {}).get("violating") for f in _figures(page) for t in f["data"])


def test_sweep_report_shows_the_curves_and_optima(tmp_path: Path) -> None:
    run = sweep("mlp-mup", widths=[32, 64], lrs=[2.0**-10, 2.0**-7, 2.0**-4], steps=4, seeds=1,
                out=tmp_path / "sweep", eval_batches=1)
    page = write_html_report(run, tmp_path / "sweep.html").read_text(encoding="utf-8")
    figure, *_ = _figures(page)
    assert [t["name"] for t in figure["data"]][:2] == ["width 32", "width 64"]
    assert "<h2>Optima</h2>" in page and re.search(r"TRANSFERS|DOES NOT TRANSFER|INCONCLUSIVE", page)
    assert "<h2>Shift of the optimum per doubling of width</h2>" in page


def test_report_command_writes_pngs_with_kaleido(mlp_runs, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["report", mlp_runs["mlp-sp"], "--out", str(tmp_path / "r.html"),
                                       "--png", str(tmp_path / "png")])
    assert result.exit_code == 0, result.output
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert [p.name for p in pngs] == ["r-coord-check-rms-act.png", "r-coord-check-rms-act_delta.png",
                                      "r-slope-of-log2-size-per-doubling-of-width-by-verdict.png"]
    for png in pngs:
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 20_000  # a drawn chart, not an empty canvas


@pytest.mark.parametrize("args, message", [
    (["report", "{tmp}/missing", "--out", "{tmp}/r.html"], "does not exist"),
    (["report", "{run}", "--out", "{tmp}/no/such/dir/r.html"], "cannot write"),
])
def test_report_bad_input_exits_2_with_one_line(mlp_runs, tmp_path: Path, args: list[str], message: str) -> None:
    argv = [a.format(tmp=tmp_path, run=mlp_runs["mlp-mup"]) for a in args]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1
