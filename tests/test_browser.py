"""The dashboard and the HTML report in a real headless Chromium (Debian's, driven by playwright): the
charts must render — plotly must have drawn trace elements — not merely be sent."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import playwright.sync_api as playwright
import pytest

import coordscope
from coordscope.lrsweep import sweep

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHART = '[data-testid="stPlotlyChart"] .js-plotly-plot'
STARTUP_S = 120
RENDER_MS = 180_000  # the test machines are small and shared: wait long, fail only if nothing renders


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(mlp_runs: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``coordscope app`` on a free local port over the SP and μP runs; killed however the tests end."""
    root = tmp_path_factory.mktemp("browser-root")
    coordscope.run("gpt-depth-unscaled", widths=[32], depths=[2, 4, 8], steps=2, seeds=1, out=root / "unscaled-depth",
                   progress=False)  # a depth coordinate check, drawn against depth
    for name in ("mlp-sp", "mlp-mup"):
        shutil.copytree(mlp_runs[name], root / name)
    shutil.copytree(mlp_runs["mlp-mup"], root / "mlp-mup-again")  # a third run for Compare
    for name in ("mlp-sp", "mlp-mup"):  # tiny real LR sweeps, SP and μP, for the side-by-side view
        sweep(name, widths=[32, 64], lrs=[2.0**-10, 2.0**-7, 2.0**-4], steps=4, seeds=1, out=root / f"sweep-{name}",
              eval_batches=1, progress=False)
    sweep("gpt-completep-sweep", widths=[16, 32], depths=[1, 2], lrs=[2.0**-10, 2.0**-7, 2.0**-4], steps=2, seeds=1,
          out=root / "sweep-deep", eval_batches=1, executor="inline", progress=False)  # a depth LR sweep
    port = _free_port()
    log = (root.parent / "streamlit.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "coordscope", "app", str(root), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the app did not start: {(root.parent / 'streamlit.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    # `coordscope app` becomes the server: stopping the process it started stops the server, no orphan
    with socket.socket() as probe, pytest.raises(OSError):
        probe.settimeout(2)
        probe.connect(("127.0.0.1", port))


@pytest.fixture()
def page(tmp_path: Path) -> Iterator[object]:
    """A page of a fresh headless Chromium profile."""
    with playwright.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context.new_page()
        finally:
            context.close()


def _rendered(page: object, selector: str) -> dict[str, object]:
    """What plotly drew in the first chart: trace groups in the SVG, and the names of violating traces.

    Read in one polling function: while Streamlit swaps a page the old chart can be found and then be gone
    a moment later, so finding it and reading it must be one step."""
    drawn = page.wait_for_function(  # type: ignore[attr-defined]
        """(selector) => {
            const chart = document.querySelector(selector);
            if (!chart || !chart.data || !chart.layout) return null;
            const traces = chart.querySelectorAll('.scatterlayer .trace, .heatmaplayer .hm').length;
            if (!traces) return null;
            return {
                traces: traces,
                violating: chart.data.filter(t => t.meta && t.meta.violating).map(t => t.meta.layer),
                axes: [chart.layout.xaxis.type, chart.layout.yaxis.type],
            };
        }""",
        arg=selector, timeout=RENDER_MS,
    )
    return drawn.json_value()  # type: ignore[no-any-return]


def test_dashboard_renders_the_sp_fan_out_with_violating_layers_marked(server: str, page, tmp_path: Path) -> None:
    page.goto(f"{server}/?run=mlp-sp")
    drawn = _rendered(page, CHART)
    page.screenshot(path=str(tmp_path / "sp.png"), full_page=True)
    assert drawn["traces"] > 0 and drawn["axes"] == ["log", "log"]
    assert {"hidden.0", "readout"} <= set(drawn["violating"])
    assert page.get_by_text("regime: SP-like").count() == 1 and page.get_by_text("FAIL: ").count() == 1


def test_dashboard_renders_the_mup_run_flat(server: str, page, tmp_path: Path) -> None:
    page.goto(f"{server}/?run=mlp-mup")
    drawn = _rendered(page, CHART)
    page.screenshot(path=str(tmp_path / "mup.png"), full_page=True)
    assert drawn["traces"] > 0 and drawn["violating"] == []


def test_slopes_page_renders_the_heatmap(server: str, page) -> None:
    page.goto(f"{server}/slopes?run=mlp-sp")
    assert _rendered(page, CHART)["traces"] > 0


def test_html_report_renders_offline(mlp_runs: dict[str, str], page, tmp_path: Path) -> None:
    from coordscope.htmlreport import write_html_report

    report = write_html_report(mlp_runs["mlp-sp"], tmp_path / "report.html")
    requests: list[str] = []
    page.route("**/*", lambda route: (requests.append(route.request.url), route.continue_()
                                      if route.request.url.startswith("file://") else route.abort()))
    page.goto(report.as_uri())
    drawn = _rendered(page, ".js-plotly-plot")
    assert drawn["traces"] > 0 and "hidden.0" in drawn["violating"]
    assert page.locator(".js-plotly-plot").count() == 3
    assert all(url.startswith("file://") for url in requests), requests


def test_app_listens_on_localhost_only(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                listening.append(address)
    assert listening == ["0100007F"], listening  # 127.0.0.1, little-endian hex; nothing on other addresses


def _choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the sidebar selectbox labelled ``label``, as a person would."""
    page.get_by_role("combobox", name=label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()


def test_switching_site_in_the_browser_keeps_a_chart_and_the_right_steps(server: str, page) -> None:
    page.goto(f"{server}/?run=mlp-sp")
    _rendered(page, CHART)
    for site in ("param", "param_update", "loss", "act"):
        _choose(page, "Site", site)
        page.wait_for_function(
            f"""() => [...document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')]
                .some(chart => chart.layout && chart.layout.title && chart.layout.title.text.includes('({site})'))""",
            timeout=RENDER_MS)
        assert _rendered(page, CHART)["traces"] > 0, site
    page.wait_for_selector(".st-key-cc-steps-act", timeout=RENDER_MS)
    steps = page.locator(".st-key-cc-steps-act").inner_text()
    assert "0" in steps.split(), steps  # act keeps its step 0


def test_a_depth_run_is_drawn_against_depth_and_switching_site_keeps_a_chart(server: str, page) -> None:
    page.goto(f"{server}/?run=unscaled-depth")
    drawn = _rendered(page, CHART)
    assert drawn["traces"] > 0 and "blocks.{last}" in drawn["violating"]  # the unscaled residual stream
    axis = page.evaluate("""() => {
        const c = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
        return {title: c.layout.xaxis.title.text, x: [...new Set(c.data.filter(t => t.meta).flatMap(t => t.x))]}; }""")
    assert axis["title"] == "depth" and sorted(axis["x"]) == [2, 4, 8]
    _choose(page, "Site", "act")
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')]
            .some(chart => chart.layout && chart.layout.title && chart.layout.title.text.includes('(act)'))""",
        timeout=RENDER_MS)
    assert _rendered(page, CHART)["traces"] > 0


def test_the_chosen_run_is_kept_across_pages(server: str, page) -> None:
    page.goto(server)
    _rendered(page, CHART)
    assert page.get_by_role("combobox", name="Run", exact=True).input_value() == "mlp-mup"  # the first, by default
    _choose(page, "Run", "mlp-sp")
    page.wait_for_function("() => location.search.includes('run=mlp-sp')", timeout=RENDER_MS)
    page.locator('[data-testid="stSidebarNavLink"]').filter(has_text="Slopes").click()
    page.wait_for_function("() => location.pathname.endsWith('/slopes')", timeout=RENDER_MS)
    _rendered(page, CHART)
    assert page.get_by_role("combobox", name="Run", exact=True).input_value() == "mlp-sp"


def test_compare_overlays_three_runs_chosen_in_the_browser(server: str, page) -> None:
    page.goto(f"{server}/compare")
    _rendered(page, CHART)
    page.get_by_role("combobox", name="Runs", exact=True).click()
    page.get_by_role("option", name="mlp-sp", exact=True).click()
    page.keyboard.press("Escape")
    page.wait_for_function(
        """() => { const chart = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
                   return chart && new Set(chart.data.filter(t => t.meta).map(t => t.meta.run)).size === 3; }""",
        timeout=RENDER_MS)
    drawn = _rendered(page, CHART)
    assert drawn["traces"] > 0 and "hidden.0" in drawn["violating"]  # the SP run's failing layers, thick


def _wait_for_curves(page, names: list[str]) -> None:
    """Wait until the first chart's loss curves (not the optimum, not the proxy's lr line) are ``names``: while
    Streamlit swaps a chart, the first one found can be a half-drawn or the previous one."""
    page.wait_for_function(
        """(names) => { const c = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
            if (!c || !c.data) return false;
            const shown = c.data.filter(t => t.mode === 'lines+markers' && !(t.name || '').includes('proxy'))
                                .map(t => t.name);
            return JSON.stringify(shown) === JSON.stringify(names); }""", arg=names, timeout=RENDER_MS)


def test_lr_sweep_page_draws_a_depth_sweep_per_depth_and_switches_to_width(server: str, page) -> None:
    page.goto(f"{server}/lr_sweep?run=sweep-deep")
    _rendered(page, CHART)
    _wait_for_curves(page, ["depth 1", "depth 2"])
    assert page.evaluate("""() => document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot')
                               .layout.legend.title.text""") == "depth"
    _choose(page, "Across", "width at depth 2")
    _wait_for_curves(page, ["width 16", "width 32"])
    assert _rendered(page, CHART)["traces"] > 0


def test_lr_sweep_page_shows_an_sp_and_a_mup_sweep_side_by_side(server: str, page) -> None:
    page.goto(f"{server}/lr_sweep?run=sweep-mlp-sp")
    _rendered(page, CHART)
    page.wait_for_function(
        """() => document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot').length >= 2""",
        timeout=RENDER_MS)
    figures = page.evaluate(
        """() => [...document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')].slice(0, 2).map(c => ({
                runs: [...new Set(c.data.filter(t => t.meta && t.meta.run).map(t => t.meta.run))],
                names: c.data.map(t => t.name),
                titles: (c.layout.annotations || []).map(a => a.text),
                panels: c.querySelectorAll('.cartesianlayer .subplot').length,
                drawn: c.querySelectorAll('.scatterlayer .trace').length,
            }))""")
    curves, shifts = figures
    assert curves["runs"] == ["sweep-mlp-sp", "sweep-mlp-mup"]  # the chosen sweep first, the other beside it
    assert curves["panels"] == 2 and curves["drawn"] >= 4
    assert any(t.startswith("sweep-mlp-sp · ") for t in curves["titles"])
    assert any(t.startswith("sweep-mlp-mup · ") for t in curves["titles"])
    assert shifts["runs"] == ["sweep-mlp-sp", "sweep-mlp-mup"]  # the shifts overlaid on one axis
    assert page.get_by_role("combobox", name="Run", exact=True).input_value() == "sweep-mlp-sp"
