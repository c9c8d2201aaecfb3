"""What measuring differences on a fixed subset of entries costs in accuracy (:mod:`coordscope.sampling`).

The same coordinate check is recorded twice — ``exact=True`` (whole copies of every parameter and of the
step-0 activations) and the default (fixed entries of every bigger tensor: about 16384 of an activation,
every row of a parameter) — and compared on the sites read on that subset: ``param``, ``param_grad``,
``param_update`` (W_{t+1} − W_t) and ``act_delta`` (x_t − x_0):

- the relative error of every recorded value (median and maximum over layers, steps, widths and seeds);
- the error that matters for a verdict: the difference of the fitted slope of log2(value) on log2(width),
  per layer, site and step (maximum), and whether the check's verdict is the same.

    python benchmarks/sampling_error.py                       # the MLP and GPT μP samples and the MLP in SP
    python benchmarks/sampling_error.py --case mlp-mup:64,256,1024,4096 --steps 5
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import polars as pl

import coordscope

CASES = ("mlp-mup:256,512,1024,2048", "mlp-sp:256,512,1024,2048", "gpt-mup:64,128,256,512")
SAMPLED = ("param", "param_grad", "param_update", "act_delta")


def compare(sample: str, widths: list[int], steps: int, seeds: int, root: Path) -> dict[str, float | bool]:
    """Record ``sample`` exactly and sampled, and the errors of the sampled run."""
    reports = {}
    for mode, exact in (("exact", True), ("sampled", False)):
        run_dir = coordscope.run(sample, widths=widths, steps=steps, seeds=seeds, exact=exact,
                                 out=root / f"{sample}-{mode}", progress=False)
        reports[mode] = coordscope.check(run_dir)
    keys = ["width", "seed", "step", "name", "site", "probe"]
    values = {mode: coordscope.load(r.run_dir).filter(pl.col("site").is_in(SAMPLED)).select(*keys, "value")
              for mode, r in reports.items()}
    joined = values["exact"].join(values["sampled"], on=keys, suffix="_sampled")
    error = (joined["value_sampled"] / joined["value"] - 1).abs().drop_nans()
    fits = {mode: r.fits.filter(pl.col("site").is_in(SAMPLED)).select("name", "site", "probe", "step", "slope")
            for mode, r in reports.items()}
    slopes = fits["exact"].join(fits["sampled"], on=["name", "site", "probe", "step"], suffix="_sampled")
    slope_error = (slopes["slope_sampled"] - slopes["slope"]).abs().drop_nans()
    return {"values": float(len(joined)), "median": float(error.median() or 0.0), "max": float(error.max() or 0.0),
            "slope_max": float(slope_error.max() or 0.0), "slope_median": float(slope_error.median() or 0.0),
            "same_verdict": reports["exact"].ok == reports["sampled"].ok,
            "verdict": "PASS" if reports["sampled"].ok else "FAIL"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", action="append", help="SAMPLE:W1,W2,... (repeatable; default: the three above)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    print(f"sampled vs exact (param, param_grad, param_update, act_delta), {args.steps} steps, {args.seeds} seeds")
    print(f"{'case':<34} {'values':>7} {'rel.err median':>15} {'rel.err max':>12} {'slope err median':>17} "
          f"{'slope err max':>14} {'verdict':>8} {'same':>5}")
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.case or CASES:
            sample, _, widths = case.partition(":")
            r = compare(sample, [int(w) for w in widths.split(",")], args.steps, args.seeds, Path(tmp))
            print(f"{case:<34} {int(r['values']):>7} {r['median']:>15.2e} {r['max']:>12.2e} "
                  f"{r['slope_median']:>17.2e} {r['slope_max']:>14.2e} {r['verdict']:>8} {str(r['same_verdict']):>5}")


if __name__ == "__main__":
    main()
