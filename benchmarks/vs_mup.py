"""coordscope against the reference: the same MLP coordinate-check sweep through
``mup.coord_check.get_coord_data(..., cuda=False)`` and through coordscope, each in a fresh process.

Same model (the hand-written μP MLP sample), widths 64…2048, 3 seeds, and the same work: three forward,
backward and Adam steps per job (mup's ``nsteps=3`` records t = 1..3 before each update; coordscope's
``steps=2`` records t = 0..2 and the update after each). Target (issue 7): coordscope's wall time at most
mup's while recording at least four times as many statistics.

Every configuration runs in a process of its own, so that one tool's heap does not warm or fragment the
other's. Each process first runs a small sweep untimed (imports, Parquet's first write) and then times
``--rounds`` whole sweeps; the median is printed. The configurations:

- ``coordscope run``: the command line, called in-process exactly as ``coordscope run mlp-mup --widths …``
  runs it. The command line keeps freed memory in its process (:mod:`coordscope.heap`).
- ``mup``: ``get_coord_data`` in a process as Python starts it.
- ``plain``: the same 18 jobs trained with nothing recorded.
- ``coordscope.run``, and ``mup`` and ``plain`` with the heap setting: the same code with and without
  :func:`coordscope.heap.keep_freed_memory`, so that what the setting buys and what recording costs can
  be read apart. Recording costs more than mup's hooks: mup takes the mean |x| of module outputs, while
  coordscope also reads every parameter, gradient and update at every step.

    python benchmarks/vs_mup.py [--rounds 3] [--repeats 2] [--widths 64,128,256,512,1024,2048]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

CONFIGS = {  # name: (what runs, whether the heap setting is on)
    "coordscope run": ("cli", True),
    "coordscope.run": ("api", False),
    "mup": ("mup", False),
    "mup, heap kept": ("mup", True),
    "plain": ("plain", False),
    "plain, heap kept": ("plain", True),
}


def sweep_mup(widths: list[int], seeds: int) -> int:
    """mup's coord check of the sweep; returns the number of statistics (one per row: l1)."""
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
    """The sweep through the command line (``cli``) or :func:`coordscope.run` (``api``); returns the
    number of statistics recorded (one per row)."""
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


def child(config: str, widths: list[int], seeds: int, rounds: int) -> None:
    """One configuration in this (fresh) process: print its times and statistics count as JSON."""
    what, heap = CONFIGS[config]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", default="64,128,256,512,1024,2048")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="timed sweeps per process")
    parser.add_argument("--repeats", type=int, default=2, help="processes per configuration, interleaved")
    parser.add_argument("--child", choices=list(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    if args.child:
        child(args.child, widths, args.seeds, args.rounds)
        return
    times: dict[str, list[float]] = {c: [] for c in CONFIGS}
    counts: dict[str, int] = {}
    for _ in range(args.repeats):  # interleaved: drifts in the machine's load hit every configuration
        for config in CONFIGS:
            out = subprocess.run([sys.executable, __file__, "--child", config, "--widths", args.widths,
                                  "--seeds", str(args.seeds), "--rounds", str(args.rounds)],
                                 check=True, capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            times[config] += result["times"]
            counts[config] = result["statistics"]
    median = {c: statistics.median(t) for c, t in times.items()}
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; widths {widths}, {args.seeds} seeds, "
          f"3 optimizer steps per job; median of {args.repeats} processes x {args.rounds} sweeps each")
    print(f"{'':<18} {'heap kept':>9} {'wall s':>7} {'statistics':>11}   all sweeps, s")
    for config, (_, heap) in CONFIGS.items():
        print(f"{config:<18} {'yes' if heap else 'no':>9} {median[config]:>7.3f} {counts[config]:>11}   "
              + " ".join(f"{t:.2f}" for t in times[config]))
    ours, theirs = median["coordscope run"], median["mup"]
    print(f"time ratio coordscope run / mup = {ours / theirs:.3f} (target <= 1); statistics ratio = "
          f"{counts['coordscope run'] / counts['mup']:.1f}x (target >= 4)")
    print(f"same heap setting for both: coordscope.run / mup = {median['coordscope.run'] / median['mup']:.3f} "
          f"(default), coordscope run / mup = {ours / median['mup, heap kept']:.3f} (kept)")
    print(f"over plain training with the same setting: mup {median['mup'] / median['plain'] - 1:+.0%} (default), "
          f"{median['mup, heap kept'] / median['plain, heap kept'] - 1:+.0%} (kept); coordscope "
          f"{median['coordscope.run'] / median['plain'] - 1:+.0%} (default), "
          f"{ours / median['plain, heap kept'] - 1:+.0%} (kept)")


if __name__ == "__main__":
    main()
