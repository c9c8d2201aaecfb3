"""Worker processes against inline on the sample LR sweep, side by side in one run.

    python benchmarks/executors.py                     # gpt-mup-sweep, 2 workers
    python benchmarks/executors.py --workers 4 --steps 100 --executor ray

Runs the same sweep (same spec, grid and seeds) inline and on ``--executor`` with ``--workers`` workers,
checks that both stored the same rows, and prints both wall times and the speed-up (target, issue 5: at
least 1.7× with 2 processes on 2 cores). Inline runs torch with this process's thread count, printed
(set OMP_NUM_THREADS to change it); each worker runs one thread.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from coordscope.lrsweep import sweep
from coordscope.transfer import load_sweep


def timed_sweep(args: argparse.Namespace, out: Path, executor: str) -> float:
    start = time.perf_counter()
    sweep(args.spec, widths=args.widths, lrs=args.lrs, steps=args.steps, seeds=args.seeds, out=out,
          executor=executor, workers=args.workers)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default="gpt-mup-sweep")
    parser.add_argument("--widths", type=lambda t: [int(w) for w in t.split(",")], default=[32, 64, 128])
    parser.add_argument("--log2-lrs", type=lambda t: [2.0 ** float(e) for e in t.split(",")], dest="lrs",
                        default=[2.0**e for e in range(-10, -4)], help="comma list of log2 learning rates")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--executor", default="processes", choices=["processes", "ray"])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        # The same directory name for both, so the stored `run` column matches too.
        inline = timed_sweep(args, Path(tmp, "inline", "sweep"), "inline")
        parallel = timed_sweep(args, Path(tmp, args.executor, "sweep"), args.executor)
        a, b = (load_sweep(Path(tmp, name, "sweep")).sort("width", "lr", "seed", "split", "step")
                for name in ("inline", args.executor))
        same = a.drop("loss").equals(b.drop("loss")) and np.allclose(a["loss"], b["loss"], rtol=1e-5,
                                                                      equal_nan=True)
    jobs = len(args.widths) * len(args.lrs) * args.seeds
    print(f"{args.spec}: widths {args.widths}, {len(args.lrs)} lrs, {args.seeds} seed(s), {args.steps} steps "
          f"= {jobs} jobs")
    print(f"inline ({torch.get_num_threads()} torch thread(s)): {inline:7.1f} s")
    print(f"{args.executor} × {args.workers} (1 thread each):  {parallel:7.1f} s")
    print(f"speed-up: {inline / parallel:.2f}×   same rows: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
