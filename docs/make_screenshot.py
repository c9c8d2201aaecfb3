"""Regenerate docs/img/figure1.png, the README's picture of the dashboard's Figure 1 view: the demo's SP and
μP learning-rate sweeps side by side on the LR sweep page, as a real browser draws them.

    python docs/make_screenshot.py                     # records the demo into a temporary directory first
    python docs/make_screenshot.py --runs runs         # or uses the runs `coordscope demo` left in runs/

Starts ``coordscope app RUNS --open gpt-sp-sweep`` on a free local port, opens the LR sweep page in headless
Chromium (Debian's /usr/bin/chromium, driven by playwright, as the browser tests do), waits until plotly has
drawn the curves, and saves the chart as a PNG. Needs the ``test`` extra (playwright) and chromium.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

COORDSCOPE = str(Path(sys.executable).with_name("coordscope"))
CHROMIUM = "/usr/bin/chromium"
OUT = Path(__file__).parent / "img" / "figure1.png"
CHART = '[data-testid="stPlotlyChart"]'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit("coordscope app exited before it served")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"coordscope app did not answer within {timeout:.0f} s")


def screenshot(runs: Path, out: Path) -> None:
    import playwright.sync_api as playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([COORDSCOPE, "app", str(runs), "--port", str(port), "--open", "gpt-sp-sweep"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(url, proc)
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1500, "height": 1100}, device_scale_factor=1)
            page.goto(f"{url}/lr_sweep")
            chart = page.locator(CHART).first
            page.wait_for_selector(f"{CHART} .scatterlayer .trace", state="attached", timeout=180_000)
            page.wait_for_function(  # both sweeps drawn, side by side
                f"""() => {{ const c = document.querySelector('{CHART} .js-plotly-plot');
                            const runs = c ? c.data.filter(t => t.meta && t.meta.run).map(t => t.meta.run) : [];
                            return new Set(runs).size >= 2; }}""",
                timeout=180_000)
            page.wait_for_timeout(1000)  # plotly's transitions
            out.parent.mkdir(parents=True, exist_ok=True)
            chart.screenshot(path=str(out))
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=Path, help="runs recorded by `coordscope demo` (default: record them now)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.runs is not None:
        screenshot(args.runs, args.out)
        return
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        subprocess.run([COORDSCOPE, "demo", "--no-app", "--runs", str(runs)], check=True)
        screenshot(runs, args.out)


if __name__ == "__main__":
    main()
