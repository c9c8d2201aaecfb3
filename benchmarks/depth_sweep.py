"""Depth transfer on a CPU (CompleteP, Dey et al. 2025): sweep the learning rate of the deep GPT sample at
depths 2..16 on the stdlib character corpus, with CompleteP's rules and with unscaled residual branches, and
compare how the optimum moves with depth.

    python benchmarks/depth_sweep.py                     # the samples' sweep defaults (see below), a few minutes
    python benchmarks/depth_sweep.py --args "--steps 200 --seeds 3" --out /tmp/depth-sweep

Each sweep runs as ``coordscope sweep SAMPLE --format json`` in a new process (what a user runs, imports
and worker start-up included); this script prints, per sample, each depth's optimal log2 lr ± its standard
error, the drift of the optimum per doubling of depth ± its standard error (the least-squares line through
every seed's optimum, the sweep's own "drift over all depths", and the verdict's weighted fit over all
depths), the verdict, the exit code and the wall time. Targets (issue 16): ``gpt-completep-sweep``
TRANSFERS with |drift| ≤ 0.25 log2 lr per doubling of depth; ``gpt-depth-unscaled-sweep`` DOES NOT TRANSFER.

The grid is the samples' ``DEFAULTS["sweep"]`` (``sample_models/completep.py``): width 64, depths 2,4,8,16,
lr 2^-10..2^-4, 100 steps, two seeds for CompleteP (its optimum sits in a flat valley), one for the
unscaled model (its optimum falls ≈ 0.6 log2 lr per doubling, far beyond tolerance), two worker processes.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SAMPLES = ("gpt-completep-sweep", "gpt-depth-unscaled-sweep")


def run(sample: str, out: Path, extra: list[str]) -> tuple[dict[str, Any], int, float]:
    """``coordscope sweep SAMPLE`` in a new process: its JSON report, its exit code and its wall time."""
    command = [sys.executable, "-m", "coordscope", "sweep", sample, "--out", str(out), "--overwrite",
               "--format", "json", *extra]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"{shlex.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout), done.returncode, seconds


def describe(sample: str, report: dict[str, Any], code: int, seconds: float) -> str:
    """One sample's figures: optimum per depth, drift per doubling of depth, verdict, compute time."""
    lines = [f"{sample}  (width {report['at']}, {report['metric']} loss)",
             f"  {'depth':>5}  {'opt log2 lr':>11}  {'± se':>5}  {'best loss':>9}"]
    for row in report["optima"]:
        lines.append(f"  {row['width']:>5}  {row['opt_log2_lr']:>+11.2f}  {row['opt_se']:>5.2f}  "
                     f"{row['best_loss']:>9.4f}")
    shifts = ", ".join(f"{s['width_lo']}→{s['width_hi']}: {s['shift']:+.2f} ± {s['shift_ci']:.2f}"
                       for s in report["shifts"])
    tail = report["tails"][0] if report["tails"] else None  # the weighted line over every depth the verdict tests
    fit = f"{tail['drift']:+.2f} ± {tail['stderr']:.2f}" if tail else "n/a"
    lines += [f"  shift per doubling of depth (± 90 %): {shifts}",
              f"  drift per doubling of depth: {report['drift']:+.2f} ± {report['drift_stderr']:.2f} log2 lr "
              f"(line through every seed's optimum); {fit} (the verdict's weighted fit over all depths)",
              f"  verdict: {report['headline']}",
              f"  exit code {code}, wall time {seconds:.0f} s"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--args", default="", help="Extra flags for every `coordscope sweep`, e.g. \"--seeds 3\".")
    parser.add_argument("--out", type=Path, help="Where the sweeps are kept (default: a temporary directory).")
    options = parser.parse_args()
    root = options.out or Path(tempfile.mkdtemp(prefix="depth-sweep-"))
    verdicts = {}
    for sample in SAMPLES:
        report, code, seconds = run(sample, root / sample, shlex.split(options.args))
        print(describe(sample, report, code, seconds), flush=True)
        verdicts[sample] = (report["verdict"], report["drift"])
    completep, unscaled = verdicts[SAMPLES[0]], verdicts[SAMPLES[1]]
    met = completep[0] == "transfers" and abs(completep[1]) <= 0.25 and unscaled[0] == "does not transfer"
    print("target (CompleteP transfers with |drift| <= 0.25, unscaled does not transfer): "
          f"{'met' if met else 'NOT met'}; sweeps kept in {root}")


if __name__ == "__main__":
    main()
