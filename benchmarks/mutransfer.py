"""μTransfer on a CPU (the effect of Tensor Programs V, Fig. 1): sweep the learning rate of the GPT sample
at several widths on the stdlib character corpus, in SP and in μP, and compare how the optimum moves.

    python benchmarks/mutransfer.py                       # 2 worker processes, the grid below
    python benchmarks/mutransfer.py --workers 4 --steps 300 --seeds 2 --out /tmp/mutransfer

The grid defaults to the sweep specs' own (``coordscope.sample_models.sweeps.SWEEP_DEFAULTS``: widths
32..256, LRs 2^-11..2^-4, 200 steps, one seed). Prints, per parametrization, the optimal log2 LR per width
(parabola-refined) and the drift (slope of the optimum against log2 width). Targets (issue 5): μP drift
within ±0.25 log2 per doubling of width, SP drift −0.5 or below, the whole benchmark within 10 minutes
on 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from coordscope.lrsweep import sweep
from coordscope.sample_models.sweeps import SWEEP_DEFAULTS
from coordscope.transfer import analyse_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", type=lambda t: [int(w) for w in t.split(",")],
                        default=SWEEP_DEFAULTS["widths"])
    parser.add_argument("--log2-lrs", type=lambda t: [2.0 ** float(e) for e in t.split(",")], dest="lrs",
                        default=SWEEP_DEFAULTS["lrs"], help="comma list of log2 learning rates (default -11..-4)")
    parser.add_argument("--steps", type=int, default=SWEEP_DEFAULTS["steps"])
    parser.add_argument("--seeds", type=int, default=SWEEP_DEFAULTS["seeds"])
    parser.add_argument("--executor", default="processes")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--metric", default="heldout", choices=["heldout", "train"])
    parser.add_argument("--out", type=Path, help="keep the sweeps here (default: a temporary directory)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        drifts = {}
        start = time.perf_counter()
        for parametrization in ("sp", "mup"):
            run_dir = sweep(f"gpt-{parametrization}-sweep", widths=args.widths, lrs=args.lrs, steps=args.steps,
                            seeds=args.seeds, out=root / parametrization, executor=args.executor,
                            workers=args.workers, overwrite=True)
            report = analyse_sweep(run_dir, metric=args.metric)
            print(f"\n== {parametrization.upper()} ==")
            print(report.render("text"), end="")
            drifts[parametrization] = report.drift
        elapsed = time.perf_counter() - start
    print(f"\nwidths {args.widths}, {len(args.lrs)} lrs, {args.steps} steps, {args.seeds} seed(s), "
          f"{args.executor} × {args.workers}: {elapsed:.0f} s")
    print(f"drift SP {drifts['sp']:+.2f} (target ≤ −0.5), μP {drifts['mup']:+.2f} (target within ±0.25) "
          "log2 lr per doubling of width")


if __name__ == "__main__":
    main()
