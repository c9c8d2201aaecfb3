"""Analysis speed: time to judge a store of one million rows, next to a plain polars read of the same store.

    python benchmarks/analysis_speed.py                  # 1,000,000 rows, best of 5
    python benchmarks/analysis_speed.py --names 400 --rounds 3

The store is synthetic but shaped like a real run (4 widths × 5 seeds × 50 steps × 200 names × 5 sites, one
probe, one shard per job, written through coordscope's own ShardWriter) with power-law values, so every
fit has data. Timed: ``coordscope.check.check_run`` on the directory, which is what ``coordscope check``
does after parsing flags — reading meta and shards, fitting, judging, summarising and diagnosing — against
``polars.scan_parquet(shards).collect()``, the floor for anything that reads every row. Target: < 1 s
(issue 7; < 2 s issue 3).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from coordscope.checking import check_run
from coordscope.runmeta import SCHEMA_VERSION, RunMeta, write_meta
from coordscope.store import ShardWriter, shard_name, shard_paths

WIDTHS = (64, 128, 256, 512)
SITES = ("act", "act_delta", "act_grad", "param", "param_grad")


def build_store(root: Path, names: int, seeds: int, steps: int) -> int:
    """Write the synthetic run into ``root``; returns its number of rows."""
    rng = np.random.default_rng(0)
    layer_names = [f"blocks.{i // 4}.layer{i % 4}" for i in range(names)]
    exponents = rng.uniform(-1.0, 1.0, size=(names, len(SITES)))
    per_step = names * len(SITES)
    name_col = [n for n in layer_names for _ in SITES]
    site_col = [s for _ in layer_names for s in SITES]
    rows = 0
    for width in WIDTHS:
        for seed in range(seeds):
            with ShardWriter(root, "bench", width, seed) as shard:
                for step in range(steps):
                    values = (width / 64.0) ** exponents.ravel() * np.exp(rng.normal(0, 0.05, per_step))
                    values[[i for i, s in enumerate(site_col) if s == "act_delta"]] *= step > 0
                    shard.write(step, name_col, site_col, ["rms"] * per_step, values,
                                ["hidden"] * per_step, ["Linear"] * per_step)
                shard.commit()
                rows += shard.rows
    write_meta(root, RunMeta.from_json({
        "schema_version": SCHEMA_VERSION, "kind": "coordcheck", "run": "bench", "spec": "synthetic",
        "widths": list(WIDTHS), "seeds": list(range(seeds)), "steps": steps - 1, "lr": 0.01,
        "optimizer": "Adam", "probes": ["rms"], "status": "complete",
        "jobs": [{"width": w, "seed": s, "shard": shard_name(w, s)} for w in WIDTHS for s in range(seeds)],
        "layers": {n: {"role": "hidden", "module": "Linear", "shape": [64, 64], "scaling_dims": [True, True]}
                   for n in layer_names},
    }))
    return rows


def best_of(rounds: int, fn: Callable[[], Any]) -> float:
    """The fastest of ``rounds`` timed calls (the least disturbed by other load on the machine)."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--names", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50, help="recorded steps per job (t = 0..steps-1)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coordscope-bench-") as tmp:
        root = Path(tmp)
        rows = build_store(root, args.names, args.seeds, args.steps)
        paths = [str(p) for p in shard_paths(root)]
        read = best_of(args.rounds, lambda: pl.scan_parquet(paths).collect())
        report = check_run(root)
        analyse = best_of(args.rounds, lambda: check_run(root))
    print(f"rows                      {rows:,}")
    print(f"fits (name, site, step)   {report.fits.height:,}")
    print(f"plain polars read         {read:.3f} s")
    print(f"coordscope check_run      {analyse:.3f} s   ({analyse / read:.1f}x the read; target < 1 s)")


if __name__ == "__main__":
    main()
