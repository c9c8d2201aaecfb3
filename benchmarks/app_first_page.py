"""How long the dashboard takes to show its first page on a million-row run.

Builds a synthetic coord-check store of 1,000,000 rows (5 widths × 4 seeds × 100 steps × 50 layers ×
5 sites × 2 probes, a fifth of the layers growing with width) in a temporary directory, then times, in one
process and side by side:

- ``scan``: a plain polars read of every row of the store (``pl.scan_parquet(shards).collect()``), the
  base of the ratio;
- ``first page (cold)``: Streamlit's AppTest running the app's default page (Coord check) once, with
  empty caches — what a visitor opening a freshly started app waits for, minus the browser's drawing;
- ``first page (reload)``: the same page opened again in a new session (the caches are warm).

Usage: ``OMP_NUM_THREADS=1 python benchmarks/app_first_page.py [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from coordscope.runmeta import SCHEMA_VERSION, RunMeta, write_meta
from coordscope.store import ShardWriter, shard_name, shard_paths

WIDTHS = (64, 128, 256, 512, 1024)
SEEDS = (0, 1, 2, 3)
STEPS = 100  # steps 0..99
LAYERS = 50
SITES = ("act", "act_delta", "act_grad", "param", "param_update")
PROBES = ("rms", "l1")
MAIN = str(Path(__file__).resolve().parent.parent / "coordscope" / "app" / "main.py")
ROOT_ENV = "COORDSCOPE_RUNS_ROOT"  # coordscope.app.data.ROOT_ENV; importing it here would preload the app


def build_store(run_dir: Path) -> int:
    """Write the synthetic run; returns its row count."""
    names = ["input"] + [f"blocks.{i}.mlp" for i in range(LAYERS - 2)] + ["readout"]
    roles = ["input"] + ["hidden"] * (LAYERS - 2) + ["output"]
    slopes = np.array([0.5 if i % 5 == 1 else 0.0 for i in range(LAYERS)])  # every fifth layer explodes
    per_step = [(n, s, p, r) for n, r in zip(names, roles, strict=True) for s in SITES for p in PROBES]
    col_names, col_sites, col_probes, col_roles = (list(c) for c in zip(*per_step, strict=True))
    layer_slope = np.repeat(slopes, len(SITES) * len(PROBES))
    rows = 0
    for width in WIDTHS:
        for seed in SEEDS:
            rng = np.random.default_rng(seed * 10_000 + width)
            with ShardWriter(run_dir, run_dir.name, width, seed) as writer:
                for step in range(STEPS):
                    growth = (width / WIDTHS[0]) ** (layer_slope * min(step, 1))
                    values = growth * np.exp(rng.normal(0.0, 0.05, len(per_step)))
                    writer.write(step, col_names, col_sites, col_probes, values, col_roles, ["Linear"] * len(per_step))
                rows += writer.rows
                writer.commit()
    write_meta(run_dir, RunMeta.from_json({
        "schema_version": SCHEMA_VERSION, "kind": "coordcheck", "run": run_dir.name, "spec": "synthetic",
        "widths": list(WIDTHS), "seeds": list(SEEDS), "steps": STEPS - 1, "lr": 0.01, "probes": list(PROBES),
        "optimizer": "Adam", "device": "cpu", "dtype": "float32", "status": "complete",
        "jobs": [{"width": w, "seed": s, "shard": shard_name(w, s)} for w in WIDTHS for s in SEEDS],
        "layers": {n: {"role": r} for n, r in zip(names, roles, strict=True)},
    }))
    return rows


def time_scan(run_dir: Path) -> float:
    start = time.perf_counter()
    frame = pl.scan_parquet([str(p) for p in shard_paths(run_dir)]).collect()
    elapsed = time.perf_counter() - start
    assert frame.height > 0
    return elapsed


def time_pages(repeats: int) -> None:
    """(Child process.) Time the default page once cold and ``repeats`` times reloaded; print JSON."""
    from streamlit.testing.v1 import AppTest

    times, traces = [], 0
    for _ in range(repeats + 1):
        start = time.perf_counter()
        at = AppTest.from_file(MAIN, default_timeout=600).run()
        times.append(time.perf_counter() - start)
        assert not at.exception, [e.message for e in at.exception]
        traces = len(json.loads(at.get("plotly_chart")[0].proto.spec)["data"])
    print(json.dumps({"cold": times[0], "reload": times[1:], "traces": traces}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="scans and page reloads to time")
    parser.add_argument("--time-pages", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time_pages:
        time_pages(args.repeats)
        return
    with tempfile.TemporaryDirectory(prefix="coordscope-bench-") as tmp:
        run_dir = Path(tmp) / "million"
        run_dir.mkdir()
        start = time.perf_counter()
        rows = build_store(run_dir)
        print(f"store: {rows:,} rows in {len(shard_paths(run_dir))} shards, written in "
              f"{time.perf_counter() - start:.1f} s")
        scans = [time_scan(run_dir) for _ in range(args.repeats)]
        child = subprocess.run([sys.executable, __file__, "--time-pages", "--repeats", str(args.repeats)],
                               env={**os.environ, ROOT_ENV: tmp}, capture_output=True, text=True, check=True)
        pages = json.loads(child.stdout.strip().splitlines()[-1])
        base = statistics.median(scans)
        print(f"scan (every row, polars):  median {base:.3f} s  {[round(s, 3) for s in scans]}")
        print(f"first page (cold):         {pages['cold']:.3f} s  = {pages['cold'] / base:.1f}x the scan  "
              f"({pages['traces']} chart traces)")
        print(f"first page (reload):       median {statistics.median(pages['reload']):.3f} s  "
              f"{[round(s, 3) for s in pages['reload']]}")


if __name__ == "__main__":
    main()
