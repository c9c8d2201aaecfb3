"""μTransfer on a CPU (the effect of Tensor Programs V, Fig. 1): sweep the learning rate of the GPT sample
at several widths on the stdlib character corpus, in SP and in μP, and compare how the optimum moves.

    python benchmarks/mutransfer.py                       # 2 worker processes, the grid below, ~3–4 min
    python benchmarks/mutransfer.py --widths 32,64,128,256 --steps 200 --mup-seeds 6 --out /tmp/mutransfer

Prints, side by side for SP and μP, the shift of the optimal log2 LR per doubling of width (± its 90 %
interval), whether it dies out, the width N from which the optimum is stable, the transfer regret (each
width's loss at the learning rate tuned at the smallest width, above its own best loss) and the verdicts of
``coordscope.transfer.analyse_sweep``. Targets (issue 18): μP transfers, outright or from N ≤ the second
smallest width; SP does not; a few minutes on 2 cores.

Why this grid. The μP optimum sits in a flat valley where one seed's optimum moves by a few tenths of a
log2 unit from seed to seed; placing each width's optimum to well within ±0.25 takes several seeds (one
seed is judged only by the optima's scatter around a line, with Student's t for its few degrees of
freedom). SP's shift of about −1.2 per doubling is so far beyond tolerance that one seed decides it, but
its optimum falls with width, so it needs a wider grid. 100 steps keep the run short; widths 16–128 keep
each job under a few seconds (a width-256 job costs as much as all the others together).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import polars as pl

from coordscope.lrsweep import sweep
from coordscope.transfer import SweepReport, analyse_sweep


def _log2_list(text: str) -> list[float]:
    return [2.0 ** float(e) for e in text.split(",")]


def _cell(value: float, error: float | None = None, pct: bool = False) -> str:
    if value == math.inf:
        return "diverged"
    if not math.isfinite(value):
        return "n/a"
    scale, unit = (100.0, " %") if pct else (1.0, "")
    text = f"{scale * value:+.2f}{unit}"
    return text + (f" ± {scale * error:.2f}" if error is not None and math.isfinite(error) else "")


def side_by_side(reports: dict[str, SweepReport]) -> str:
    """The per-doubling shifts, their trend, N and the proxy regret of each sweep, one column per sweep."""
    names = list(reports)
    width = 28
    head = f"{'':16}" + "".join(f"{n:>{width}}" for n in names)
    lines = ["shift of the optimal log2 lr per doubling of width (± 90 % interval)", head]
    pairs = sorted({(lo, hi) for rep in reports.values()
                    for lo, hi in rep.shifts.select("width_lo", "width_hi").iter_rows()})
    for lo, hi in pairs:
        cells = []
        for rep in reports.values():
            row = rep.shifts.filter((pl.col("width_lo") == lo) & (pl.col("width_hi") == hi))
            cells.append(_cell(row["shift"][0], row["shift_ci"][0]) + f" {row['status'][0]:<10}" if row.height else "")
        lines.append(f"{f'{lo} → {hi}':16}" + "".join(f"{c:>{width}}" for c in cells))
    lines.append(f"{'trend':16}" + "".join(f"{rep.trend.shape:>{width}}" for rep in reports.values()))
    lines.append(f"{'stable from N':16}" + "".join(f"{rep.stable_from if rep.stable_from is not None else '—':>{width}}"
                                                  for rep in reports.values()))
    proxies = {rep.proxy_width for rep in reports.values()}
    lines += ["", f"transfer regret: loss at the lr tuned at width {'/'.join(map(str, sorted(proxies)))}, above each "
              "width's best (± s.e.)", head]
    widths = sorted({w for rep in reports.values() for w in rep.optima["width"]})
    for w in widths:
        cells = []
        for rep in reports.values():
            row = rep.regret.filter((pl.col("source") == "proxy") & (pl.col("width") == w))
            cells.append(_cell(row["regret_rel"][0], row["regret_rel_se"][0], pct=True) if row.height else "")
        lines.append(f"{f'width {w}':16}" + "".join(f"{c:>{width}}" for c in cells))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--widths", type=lambda t: [int(w) for w in t.split(",")], default=[16, 32, 64, 128])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--mup-log2-lrs", type=_log2_list, dest="mup_lrs", default=_log2_list("-9,-8,-7,-6,-5"),
                        help="comma list of log2 learning rates for μP (default -9..-5)")
    parser.add_argument("--sp-log2-lrs", type=_log2_list, dest="sp_lrs", default=_log2_list("-10,-9,-8,-7,-6,-5,-4"),
                        help="comma list of log2 learning rates for SP (default -10..-4)")
    parser.add_argument("--mup-seeds", type=int, default=4)
    parser.add_argument("--sp-seeds", type=int, default=1)
    parser.add_argument("--executor", default="processes")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--metric", default="heldout", choices=["heldout", "train"])
    parser.add_argument("--out", type=Path, help="keep the sweeps here (default: a temporary directory)")
    parser.add_argument("--figure", type=Path, help="also write the overlaid shift and regret figures as HTML")
    args = parser.parse_args()

    grids = {"sp": (args.sp_lrs, args.sp_seeds), "mup": (args.mup_lrs, args.mup_seeds)}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        reports: dict[str, SweepReport] = {}
        timings = {}
        for parametrization, (lrs, seeds) in grids.items():
            start = time.perf_counter()
            run_dir = sweep(f"gpt-{parametrization}-sweep", widths=args.widths, lrs=lrs, steps=args.steps,
                            seeds=seeds, out=root / parametrization, executor=args.executor,
                            workers=args.workers, overwrite=True, progress=False)
            timings[parametrization] = time.perf_counter() - start
            report = analyse_sweep(run_dir, metric=args.metric)
            print(f"\n== {parametrization.upper()} ({len(lrs)} lrs 2^{math.log2(lrs[0]):g}..2^{math.log2(lrs[-1]):g}, "
                  f"{seeds} seed(s), {timings[parametrization]:.0f} s) ==")
            print(report.render("text"), end="")
            reports["SP" if parametrization == "sp" else "μP"] = report
        if args.figure is not None:
            from coordscope import plots

            figures = [plots.shift_figure({k: r.shifts for k, r in reports.items()}, tolerance=reports["μP"].tolerance,
                                          stable_from={k: r.stable_from for k, r in reports.items()},
                                          title="shift of the optimal lr per doubling of width: SP vs μP"),
                       *(plots.regret_figure(r.regret, title=f"transfer regret, {k}") for k, r in reports.items())]
            args.figure.write_text("".join(f.to_html(full_html=False, include_plotlyjs=i == 0)
                                           for i, f in enumerate(figures)), encoding="utf-8")
    print("\n== SP vs μP ==")
    print(side_by_side(reports), end="")
    print(f"\nwidths {args.widths}, {args.steps} steps, {args.executor} × {args.workers}: "
          f"SP {timings['sp']:.0f} s + μP {timings['mup']:.0f} s = {sum(timings.values()):.0f} s")
    for name, report in reports.items():
        print(f"{name}: {report.headline}")
    mup, sp = reports["μP"], reports["SP"]
    second = sorted(args.widths)[1]
    print(f"targets: μP transfers from N ≤ {second}: "
          f"{'yes' if mup.transfers and mup.stable_from is not None and mup.stable_from <= second else 'NO'}; "
          f"SP does not transfer: {'yes' if sp.verdict == 'does not transfer' else 'NO'}")


if __name__ == "__main__":
    main()
