"""``coordscope sweep``: an LR sweep across widths or depths (or a recorded one), then its transfer verdict.

Exit 0: the optimum transfers (outright, or from a width N on); 1: it does not, or the sweep is
inconclusive, or — with --fail-above-proxy — N lies above the proxy width; 2: bad input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from coordscope.choices import EXECUTORS, SWEEP_FORMATS, SWEEP_METRICS
from coordscope.cli.options import config_option, parse_int_list, parse_log2_grid, parse_seeds
from coordscope.errors import ConfigError


@click.command()
@click.argument("spec")
@click.option("--widths", help="Comma-separated widths, increasing (default: the spec's sweep grid, "
              "else 64,128,256,512; one width, 128, with --depths).")
@click.option("--depths", help="Comma-separated depths, increasing: sweep depth too, calling the spec's "
              "model(width, depth), and judge whether the optimum transfers across depth at each width "
              "(and across width at each depth when widths vary too) (default: the spec's sweep grid, "
              "else no depth sweep).")
@click.option("--lrs", help="Learning rates: a log2 grid START:STOP:STEP such as 2^-14:2^-4:0.5 (STEP in log2 "
              "units), or a comma list such as 1e-3,2^-8,0.01 (at least three).")
@click.option("--steps", type=int, help="Training steps per job, each on a fresh batch (default 100).")
@click.option("--seeds", help="A count N (seeds 0..N-1) or a comma list of seeds (default 1). Two or more "
              "measure how much the optimum moves from seed to seed.")
@click.option("--out", type=click.Path(file_okay=True, dir_okay=True),
              help="Sweep directory to create, or a file:// URI (default runs/<spec>-<time>).")
@click.option("--executor", type=click.Choice(EXECUTORS), help="Where jobs run (default inline).")
@click.option("--workers", type=int, help="Worker processes (processes) or CPUs of a local Ray instance.")
@click.option("--device", help="Torch device, e.g. cpu or cuda (default cpu).")
@click.option("--overwrite", is_flag=True, help="Replace an existing sweep directory.")
@click.option("--resume", is_flag=True, help="Continue an interrupted sweep in --out: only missing jobs run.")
@click.option("--metric", type=click.Choice(SWEEP_METRICS),
              help="Score of a job: its held-out loss at the end (default), or its mean train loss over the "
                   "last 10% of steps.")
@click.option("--tolerance", type=float,
              help="Largest shift of the optimum (log2 LR per doubling of width) that still counts as stable "
                   "(default 0.25).")
@click.option("--proxy-width", type=int,
              help="The width you tune the learning rate at (default: the smallest swept width); the regret "
                   "of its optimum is reported at every width. Across depth the proxy is the smallest depth.")
@click.option("--fail-above-proxy/--no-fail-above-proxy", default=None,
              help="Exit 1 when the optimum is stable only from a width N above --proxy-width (default: "
                   "'transfers from width N' exits 0 and names N).")
@click.option("--format", "fmt", type=click.Choice(SWEEP_FORMATS), default="text", show_default=True)
@config_option
def sweep(spec: str, widths: str | None, depths: str | None, lrs: str | None, steps: int | None, seeds: str | None,
          out: str | None, executor: str | None, workers: int | None, device: str | None, overwrite: bool, resume: bool,
          metric: str | None, tolerance: float | None, proxy_width: int | None, fail_above_proxy: bool | None,
          fmt: str, config_path: str | None) -> None:
    """Sweep the learning rate of SPEC (a .py file, module, module:attr or sample name such as
    gpt-mup-sweep) at several widths, and judge whether the optimum transfers across width; with --depths
    (e.g. 2,4,8,16, SPEC's model(width, depth)), at several depths, and judge it across depth at each
    width. SPEC may also be a recorded sweep directory: then it is only judged.

    Every (width, lr, seed) job trains for --steps steps on the spec's data stream; its train losses and
    final held-out loss go into a Parquet shard under --out. Per width, the optimal log2 LR is the grid
    minimum refined by a parabola through its neighbours, with a standard error from the seeds and from
    how flat the loss is there. The verdict follows the shift of the optimum per doubling of width (of
    depth in a depth sweep, with "depth" for "width" below):
    TRANSFERS (stable within --tolerance at every width), TRANSFERS FROM WIDTH N (stable from N on: a
    finite-width effect that dies out), DOES NOT TRANSFER, or INCONCLUSIVE (optimum at the grid's edge,
    loss too flat, too few widths or seeds) — each with its reason and a hint. Unset flags come from
    [tool.coordscope.sweep] in the nearest pyproject.toml, then from the spec's DEFAULTS["sweep"].
    Exit codes: 0 transfers (from N too, unless --fail-above-proxy and N > --proxy-width), 1 otherwise,
    2 bad input. A depth sweep with several widths is judged per width (and per depth across width); it
    exits 0 only when every judgement transfers, and --format json then prints {"ok", "reports": [...]}.
    """
    # Imported here, not at the top: they import torch, which `coordscope --help` must not.
    from coordscope.lrsweep import sweep as run_sweep
    from coordscope.runmeta import META
    from coordscope.transfer import analyse_sweeps

    recorded = (Path(spec) / META).is_file()
    if recorded:
        given = {"--widths": widths, "--depths": depths, "--lrs": lrs, "--steps": steps, "--seeds": seeds, "--out": out,
                 "--executor": executor, "--workers": workers, "--device": device,
                 "--overwrite": overwrite or None, "--resume": resume or None}
        extra = [flag for flag, value in given.items() if value is not None]
        if extra:
            raise ConfigError(f"{spec} is a recorded sweep: {extra[0]} applies only when sweeping a spec")
        run_dir = Path(spec)
    else:
        run_dir = run_sweep(
            spec,
            widths=parse_int_list("--widths", widths) if widths else None,
            depths=parse_int_list("--depths", depths) if depths else None,
            lrs=parse_log2_grid("--lrs", lrs) if lrs else None,
            steps=steps,
            seeds=parse_seeds(seeds) if seeds else None,
            out=out, executor=executor, workers=workers, device=device, overwrite=overwrite, resume=resume,
            config=config_path,
        )
    reports = analyse_sweeps(run_dir, metric=metric, tolerance=tolerance, proxy_width=proxy_width,
                             fail_above_proxy=fail_above_proxy, config=config_path)
    if fmt == "json" and len(reports) > 1:  # one judgement keeps the width sweep's JSON object as it was
        click.echo(json.dumps({"ok": all(r.ok for r in reports), "reports": [r.to_dict() for r in reports]},
                              indent=2))
    else:
        click.echo("\n".join(r.render(fmt) for r in reports), nl=False)
    if fmt == "text" and not recorded:
        click.echo(f"sweep recorded in {run_dir}", err=True)
    sys.exit(0 if all(r.ok for r in reports) else 1)
