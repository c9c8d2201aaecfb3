"""``coordscope demo``: the two pictures that show what μP is for, recorded on this machine, then the
dashboard on them.

1. Coordinate checks of the same MLP in standard parametrization (SP) and in μP: under SP the curves fan
   out with width (the check fails, naming the layers); under μP they are flat (it passes). Then the same
   along depth: a deep GPT whose residual branches are not scaled with depth (the residual stream grows with
   depth: fails, ``branch_unscaled``) and the same GPT with CompleteP's scaling (flat: passes).
2. Learning-rate sweeps of the GPT sample in SP and in μP on the stdlib corpus — Tensor Programs V's
   Figure 1: under SP (with Adam) the optimal learning rate slides about one log2 unit down per doubling of
   width, under μP it stays put.

The settings below were chosen by measurement (``benchmarks/demo.py``) to fit about two minutes of compute
on a 2-core CPU while keeping the verdicts firm: SP's shift is so far beyond tolerance that one seed decides
it, μP's flat optimum needs two seeds to be placed within ±0.25 log2 lr per doubling.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from coordscope.cli.app import DEFAULT_PORT, LOCALHOST, serve

COORD_CHECKS = ("mlp-sp", "mlp-mup")  # the same MLP in standard parametrization and in μP
DEPTH_CHECKS = ("gpt-depth-unscaled", "gpt-completep")  # a deep GPT without and with CompleteP's branch scaling
CHECK_WIDTHS = [64, 128, 256, 512]
CHECK_STEPS = 5
CHECK_SEEDS = 3
SWEEPS = {"gpt-sp-sweep": 1, "gpt-mup-sweep": 2}  # spec → seeds (SP first: the failing one is shown first)
SWEEP_WIDTHS = [16, 32, 64, 128]
SWEEP_LRS = [2.0**e for e in range(-9, -3)]  # 2^-9 .. 2^-4: brackets every width's optimum in SP and in μP
SWEEP_STEPS = 100
EXECUTOR = "processes"  # the sweeps: one torch thread per worker process, one worker per core
PROGRESS_EVERY_S = 5.0  # without a terminal (no progress bar), a line at most this often


def _watch(run_dir: Path, total: int, label: str) -> Callable[[], None]:
    """Print ``label: k/total jobs`` as the run's shards appear (at most every :data:`PROGRESS_EVERY_S`), for
    when stderr is not a terminal and the executor's progress bar is hidden; returns the function that
    stops it."""
    from coordscope.store import shard_paths

    stop = threading.Event()
    start = time.perf_counter()

    def loop() -> None:
        shown = -1
        while not stop.wait(PROGRESS_EVERY_S):
            done = len(shard_paths(run_dir)) if run_dir.is_dir() else 0
            if done != shown:
                click.echo(f"    {label}: {done}/{total} jobs, {time.perf_counter() - start:.0f} s")
                shown = done

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()

    def halt() -> None:
        stop.set()
        thread.join()

    return halt


@contextmanager
def _part(title: str, run_dir: Path, total: int, timings: dict[str, float]) -> Iterator[None]:
    """Announce one part of the demo, show its progress, and record and print how long it took."""
    click.echo(f"{title}:")
    halt = _watch(run_dir, total, run_dir.name) if not sys.stderr.isatty() else (lambda: None)
    start = time.perf_counter()
    try:
        yield
    finally:
        halt()
    timings[run_dir.name] = time.perf_counter() - start
    click.echo(f"  {run_dir.name}: {timings[run_dir.name]:.1f} s")


def _record(run_dir: Path, record: Callable[..., Path]) -> None:
    """Run ``record`` into ``run_dir`` unless it already holds a complete run; resume a partial one."""
    from coordscope.runmeta import META
    from coordscope.store import is_complete

    if (run_dir / META).is_file() and is_complete(run_dir):
        click.echo(f"  {run_dir}: complete, kept")
        return
    record(out=run_dir, resume=(run_dir / META).is_file())


def record_demo(runs: Path, *, sweep: bool = True, timings: dict[str, float] | None = None) -> list[Path]:
    """Record the demo's runs under ``runs`` (skipping complete ones) and return their directories;
    ``timings`` receives each run's seconds."""
    import torch

    from coordscope.coordcheck import run
    from coordscope.spec import load_spec

    # The coord checks' jobs are small (an MLP up to width 512, 5 steps): one thread in this process does
    # them in about a second each, where two threads wait on each other (10 s, more when another process
    # holds a core) and worker processes spend longer starting than working.
    torch.set_num_threads(1)
    timings = {} if timings is None else timings
    dirs = []
    for name in COORD_CHECKS:
        with _part(f"coord check {name} (widths {CHECK_WIDTHS[0]}..{CHECK_WIDTHS[-1]}, {CHECK_STEPS} steps, "
                   f"{CHECK_SEEDS} seeds)", runs / name, len(CHECK_WIDTHS) * CHECK_SEEDS, timings):
            _record(runs / name, lambda name=name, **kw: run(name, widths=CHECK_WIDTHS, steps=CHECK_STEPS,
                                                             seeds=CHECK_SEEDS, executor="inline", **kw))
        dirs.append(runs / name)
    for name in DEPTH_CHECKS:  # the sample's own grid (DEFAULTS): the one its tests judge over five seed sets
        grid = load_spec(name).defaults
        widths, depths, seeds = grid["widths"], grid["depths"], grid["seeds"]
        with _part(f"depth coord check {name} (width {widths[0]}, depths {depths[0]}..{depths[-1]}, "
                   f"{grid['steps']} steps, {seeds} seeds)", runs / name, len(widths) * len(depths) * seeds, timings):
            _record(runs / name, lambda name=name, **kw: run(name, executor="inline", **kw))
        dirs.append(runs / name)
    if sweep:
        from coordscope.lrsweep import sweep as lr_sweep

        for name, seeds in SWEEPS.items():
            with _part(f"LR sweep {name} (widths {SWEEP_WIDTHS[0]}..{SWEEP_WIDTHS[-1]}, {len(SWEEP_LRS)} learning "
                       f"rates 2^-9..2^-4, {SWEEP_STEPS} steps, {seeds} seed{'s' if seeds > 1 else ''})", runs / name,
                       len(SWEEP_WIDTHS) * len(SWEEP_LRS) * seeds, timings):
                _record(runs / name, lambda name=name, seeds=seeds, **kw: lr_sweep(
                    name, widths=SWEEP_WIDTHS, lrs=SWEEP_LRS, steps=SWEEP_STEPS, seeds=seeds, executor=EXECUTOR,
                    **kw))
            dirs.append(runs / name)
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
@click.option("--no-sweep", is_flag=True,
              help="Skip the two LR sweeps: most of the demo's time (the coord checks take about 6 s).")
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True, help="Port of the dashboard.")
def demo(runs_dir: str, no_app: bool, no_sweep: bool, port: int) -> None:
    """Record the MLP sample's coordinate check in SP and in μP, a deep GPT's depth coordinate check without
    and with CompleteP's branch scaling, and the GPT sample's learning-rate sweeps in SP and in μP (Tensor
    Programs V, Figure 1) into --runs — 70 to 120 s on a 2-core CPU, depending on what else runs there;
    progress shown — print their verdicts, and open the dashboard on the failing SP run
    (http://127.0.0.1:PORT)."""
    runs = Path(runs_dir)
    timings: dict[str, float] = {}
    dirs = record_demo(runs, sweep=not no_sweep, timings=timings)
    spent = sum(timings.values())
    click.echo(f"recorded in {spent:.0f} s; verdicts:" if spent >= 1 else "every run was already complete; verdicts:")
    for run_dir in dirs:
        click.echo(f"  {run_dir}: {_summary(run_dir)}")
    if no_app:
        click.echo(f"open them with: coordscope app {runs} --open mlp-sp")
        return
    click.echo("Coord check page (it opens on mlp-sp, the SP run): its curves fan out with width, violating layers "
               "thick and red (⚠); pick mlp-mup under Run to see them flat, gpt-depth-unscaled and gpt-completep "
               "for the same against depth.")
    if not no_sweep:
        click.echo("LR sweep page: the SP and μP sweeps side by side (Tensor Programs V, Figure 1): SP's optimal "
                   "learning rate (stars) slides left as width doubles, μP's stays put.")
    serve(runs, port=port, host=LOCALHOST, open_runs=["mlp-sp", *([] if no_sweep else ["gpt-sp-sweep"])])
