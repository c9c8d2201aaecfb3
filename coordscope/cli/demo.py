"""``coordscope demo``: record an SP and a μP sample and a short LR sweep, then open the dashboard —
the quickest way to see what coordscope shows (curves fanning out under SP, flat under μP)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from coordscope.cli.app import DEFAULT_PORT, LOCALHOST, serve

COORD_CHECKS = ("mlp-sp", "mlp-mup")  # the same MLP in standard parametrization and in μP
SWEEP = "gpt-mup-sweep"
SWEEP_WIDTHS = [32, 64, 128]
SWEEP_LRS = [2.0**e for e in range(-11, -3, 2)]  # 2^-11 .. 2^-5: brackets the optimum of every width
SWEEP_STEPS = 80


def _record(run_dir: Path, record: Callable[..., Path]) -> None:
    """Run ``record`` into ``run_dir`` unless it already holds a complete run; resume a partial one."""
    from coordscope.runmeta import META
    from coordscope.store import is_complete

    if (run_dir / META).is_file() and is_complete(run_dir):
        click.echo(f"  {run_dir}: complete, kept")
        return
    record(out=run_dir, resume=(run_dir / META).is_file())


def record_demo(runs: Path, *, sweep: bool = True) -> list[Path]:
    """Record the demo's runs under ``runs`` (skipping complete ones) and return their directories."""
    from coordscope.coordcheck import run

    dirs = []
    for name in COORD_CHECKS:
        click.echo(f"coord check {name} (widths 64..512, 5 steps, 3 seeds):")
        _record(runs / name, lambda name=name, **kw: run(name, widths=[64, 128, 256, 512], steps=5, seeds=3, **kw))
        dirs.append(runs / name)
    if sweep:
        from coordscope.lrsweep import sweep as lr_sweep

        click.echo(f"LR sweep {SWEEP} (widths 32..128, 4 learning rates, 80 steps):")
        _record(runs / SWEEP, lambda **kw: lr_sweep(SWEEP, widths=SWEEP_WIDTHS, lrs=SWEEP_LRS, steps=SWEEP_STEPS,
                                                    seeds=1, **kw))
        dirs.append(runs / SWEEP)
    return dirs


def _summary(run_dir: Path) -> str:
    from coordscope.checking import check_run
    from coordscope.runmeta import read_meta
    from coordscope.transfer import analyse_sweep

    if read_meta(run_dir).kind == "lrsweep":
        return analyse_sweep(run_dir).headline
    return check_run(run_dir).headline


@click.command()
@click.option("--runs", "runs_dir", default="runs", show_default=True, type=click.Path(file_okay=False),
              help="Directory to record the demo runs into (complete runs there are reused).")
@click.option("--no-app", is_flag=True, help="Only record the runs; do not start the dashboard.")
@click.option("--no-sweep", is_flag=True, help="Skip the LR sweep (the slowest part: minutes on a 2-core CPU).")
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True, help="Port of the dashboard.")
def demo(runs_dir: str, no_app: bool, no_sweep: bool, port: int) -> None:
    """Record the MLP sample in SP and in μP and a short μP GPT learning-rate sweep into --runs, print
    their verdicts, and open the dashboard on them (http://127.0.0.1:PORT)."""
    runs = Path(runs_dir)
    for run_dir in record_demo(runs, sweep=not no_sweep):
        click.echo(f"  {run_dir}: {_summary(run_dir)}")
    if no_app:
        click.echo(f"open them with: coordscope app {runs}")
        return
    click.echo("Coord check page: the SP run's curves fan out with width (violating layers thick, red, ⚠); "
               "the μP run's are flat.")
    serve(runs, port=port, host=LOCALHOST)
