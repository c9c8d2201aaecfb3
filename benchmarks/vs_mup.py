"""coordscope against the reference: the same MLP coordinate-check sweep through ``coordscope run`` and through
``mup.coord_check.get_coord_data(..., cuda=False)``, each as it really runs — a new process.

Same model (the hand-written μP MLP sample), widths 64…2048, 3 seeds, and the same work: three forward,
backward and Adam steps per job (mup's ``nsteps=3`` records t = 1..3 before each update; coordscope's
``--steps 2`` records t = 0..2 and the update after each). Targets (issues 7 and 19): the whole
``coordscope run`` process at most the wall time of the whole mup process, while recording at least four
times as many statistics.

The configurations, each timed from process start to exit by this script, interleaved ``--repeats`` times
(drifts in the machine's load hit every one alike), medians printed:

- ``coordscope run``: the command line, ``coordscope run mlp-mup --widths … --out DIR``, as a user types it
  (it keeps freed memory in its process, :mod:`coordscope.heap`);
- ``mup``: a user's script (this file with ``--script mup``): import torch and mup, build the batch, call
  ``get_coord_data`` on the sweep;
- ``plain``: a script training the same 18 jobs with nothing recorded (``--script plain``) — what both add to.

``--warm`` runs the previous comparison instead: each tool's sweep timed inside one process after a first
untimed sweep, with and without the heap setting — the sweep's own cost, without Python's and torch's start.

    python benchmarks/vs_mup.py [--repeats 5] [--widths 64,128,256,512,1024,2048]
    python benchmarks/vs_mup.py --warm [--rounds 3]
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
from collections.abc import Callable
from pathlib import Path


def coordscope_command() -> list[str]:
    """``coordscope`` as installed beside this Python (the console script), else ``python -m coordscope``."""
    script = Path(sys.executable).with_name("coordscope")
    return [str(script)] if script.exists() else [sys.executable, "-m", "coordscope"]


def timed(command: list[str]) -> tuple[float, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(command[:3])} failed: {done.stderr[-2000:]}")
    return elapsed, done.stdout


def new_processes(widths: str, seeds: int, repeats: int) -> None:
    import coordscope

    times: dict[str, list[float]] = {"coordscope run": [], "mup": [], "plain": []}
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            for config in times:
                if config == "coordscope run":
                    out = f"{tmp}/run{i}"
                    elapsed, _ = timed([*coordscope_command(), "run", "mlp-mup", "--widths", widths, "--steps", "2",
                                        "--seeds", str(seeds), "--lr", "0.01", "--out", out])
                    counts[config] = coordscope.load(out).height
                else:  # this file, running only that sweep: a user's script
                    elapsed, stdout = timed([sys.executable, __file__, "--script", config, "--widths", widths,
                                             "--seeds", str(seeds)])
                    counts[config] = int(stdout.strip().splitlines()[-1])
                times[config].append(elapsed)
    median = {c: statistics.median(t) for c, t in times.items()}
    import torch

    print(f"torch {torch.__version__}; widths {widths}, {seeds} seeds, 3 optimizer steps per job; each a new "
          f"process, timed start to exit, median of {repeats} (interleaved)")
    print(f"{'':<16} {'wall s':>7} {'statistics':>11}   every run, s")
    for config, values in times.items():
        print(f"{config:<16} {median[config]:>7.2f} {counts[config]:>11}   " + " ".join(f"{t:.2f}" for t in values))
    print(f"time ratio coordscope run / mup = {median['coordscope run'] / median['mup']:.3f} (target <= 1); "
          f"statistics ratio = {counts['coordscope run'] / counts['mup']:.1f}x (target >= 4)")
    print(f"over plain training: mup {median['mup'] / median['plain'] - 1:+.0%}, "
          f"coordscope run {median['coordscope run'] / median['plain'] - 1:+.0%}")


# -- --warm: each sweep inside one process, after a first untimed one ---------------------------------------

WARM = {  # name: (what runs, whether the heap setting is on)
    "coordscope run": ("cli", True),
    "coordscope.run": ("api", False),
    "mup": ("mup", False),
    "mup, heap kept": ("mup", True),
    "plain": ("plain", False),
    "plain, heap kept": ("plain", True),
}


def sweep_mup(widths: list[int], seeds: int) -> int:
    import torch
    from mup.coord_check import get_coord_data

    from coordscope.sample_models import mlp

    torch.manual_seed(0)
    batch = next(mlp.batches())
    models = {w: (lambda w=w: mlp.build(w, "mup")) for w in widths}
    frame = get_coord_data(models, [batch], optimizer="adam", lr=0.01, mup=False, cuda=False, nsteps=3,
                           nseeds=seeds, show_progress=False)
    return len(frame) * (len(frame.columns) - 5)


def sweep_plain(widths: list[int], seeds: int) -> int:
    """The same jobs with nothing recorded: model, batch and optimizer as coordscope builds them."""
    from coordscope.device import seed_everything
    from coordscope.spec import build_model, first_batch, load_spec

    spec = load_spec("mlp-mup")
    for width in widths:
        for seed in range(seeds):
            seed_everything(seed)
            model = build_model(spec, width)
            batch = first_batch(spec)
            optimizer = spec.make_optimizer(model, 0.01)
            for _ in range(3):
                loss = spec.compute_loss(model, batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    return 0


def sweep_coordscope(widths: list[int], seeds: int, how: str) -> int:
    import coordscope
    from coordscope.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/run"
        if how == "cli":
            try:
                main(["run", "mlp-mup", "--widths", ",".join(map(str, widths)), "--steps", "2",
                      "--seeds", str(seeds), "--lr", "0.01", "--out", out])
            except SystemExit as exc:
                if exc.code:
                    raise
        else:
            coordscope.run("mlp-mup", widths=widths, steps=2, seeds=seeds, lr=0.01, out=out, progress=False)
        return coordscope.load(out).height


def warm_child(config: str, widths: list[int], seeds: int, rounds: int) -> None:
    what, heap = WARM[config]
    if heap:
        from coordscope.heap import keep_freed_memory

        keep_freed_memory()
    sweep: Callable[[list[int], int], int] = {
        "mup": sweep_mup, "plain": sweep_plain,
        "cli": lambda w, s: sweep_coordscope(w, s, "cli"), "api": lambda w, s: sweep_coordscope(w, s, "api"),
    }[what]
    sweep(widths[:2], 1)  # the process's one-off costs
    times, count = [], 0
    for _ in range(rounds):
        start = time.perf_counter()
        count = sweep(widths, seeds)
        times.append(time.perf_counter() - start)
    print(json.dumps({"times": times, "statistics": count}))


def warm(widths: str, seeds: int, rounds: int, repeats: int) -> None:
    times: dict[str, list[float]] = {c: [] for c in WARM}
    counts: dict[str, int] = {}
    for _ in range(repeats):
        for config in WARM:
            out = subprocess.run([sys.executable, __file__, "--child", config, "--widths", widths,
                                  "--seeds", str(seeds), "--rounds", str(rounds)],
                                 check=True, capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            times[config] += result["times"]
            counts[config] = result["statistics"]
    median = {c: statistics.median(t) for c, t in times.items()}
    print(f"sweep alone, inside one process after an untimed first sweep; median of {repeats} processes x {rounds}")
    print(f"{'':<18} {'heap kept':>9} {'wall s':>7} {'statistics':>11}   all sweeps, s")
    for config, (_, heap) in WARM.items():
        print(f"{config:<18} {'yes' if heap else 'no':>9} {median[config]:>7.3f} {counts[config]:>11}   "
              + " ".join(f"{t:.2f}" for t in times[config]))
    ours, theirs = median["coordscope run"], median["mup"]
    print(f"time ratio coordscope run / mup = {ours / theirs:.3f}; same heap setting for both: coordscope.run / mup "
          f"= {median['coordscope.run'] / theirs:.3f} (default), coordscope run / mup = "
          f"{ours / median['mup, heap kept']:.3f} (kept)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", default="64,128,256,512,1024,2048")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="processes per configuration, interleaved")
    parser.add_argument("--warm", action="store_true", help="time each sweep inside a warmed-up process instead")
    parser.add_argument("--rounds", type=int, default=3, help="--warm: timed sweeps per process")
    parser.add_argument("--child", choices=list(WARM), help=argparse.SUPPRESS)
    parser.add_argument("--script", choices=["mup", "plain"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.script:
        sweep = sweep_mup if args.script == "mup" else sweep_plain
        print(sweep([int(w) for w in args.widths.split(",")], args.seeds))
    elif args.child:
        warm_child(args.child, [int(w) for w in args.widths.split(",")], args.seeds, args.rounds)
    elif args.warm:
        warm(args.widths, args.seeds, args.rounds, args.repeats)
    else:
        new_processes(args.widths, args.seeds, args.repeats)


if __name__ == "__main__":
    main()
