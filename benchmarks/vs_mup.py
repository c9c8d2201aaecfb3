"""coordscope against the reference: the same MLP coordinate-check sweep through
``mup.coord_check.get_coord_data(..., cuda=False)`` and through :func:`coordscope.run`, side by side.

Same model (the hand-written μP MLP sample), widths 64…2048, 3 seeds, and the same work: three forward,
backward and Adam steps per job (mup's ``nsteps=3`` records t = 1..3 before each update; coordscope's
``steps=2`` records t = 0..2 and the update after each). Prints both wall times (median of the rounds,
interleaved), their ratio and the number of statistics each recorded. Target (issue 7): coordscope's time
at most mup's while recording at least four times as many statistics.

A third row, plain training of the same 18 jobs with nothing recorded, shows what each tool adds: mup
takes the mean |x| of module outputs (activation-sized work), while coordscope also takes every
parameter, gradient and update, work the size of the model at every step.

    python benchmarks/vs_mup.py [--rounds 3] [--widths 64,128,256,512,1024,2048]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

import coordscope
from coordscope.job import seed_everything
from coordscope.sample_models import mlp
from coordscope.spec import build_model, first_batch, load_spec


def with_mup(widths: list[int], seeds: int) -> tuple[float, int]:
    from mup.coord_check import get_coord_data

    torch.manual_seed(0)
    batch = next(mlp.batches())
    models = {w: (lambda w=w: mlp.build(w, "mup")) for w in widths}
    start = time.perf_counter()
    frame = get_coord_data(models, [batch], optimizer="adam", lr=0.01, mup=False, cuda=False, nsteps=3,
                           nseeds=seeds, show_progress=False)
    return time.perf_counter() - start, len(frame) * (len(frame.columns) - 5)  # one statistic per row (l1)


def plain(widths: list[int], seeds: int) -> float:
    """The same jobs trained with nothing recorded: model, batch and optimizer as coordscope builds them."""
    spec = load_spec("mlp-mup")
    start = time.perf_counter()
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
    return time.perf_counter() - start


def with_coordscope(widths: list[int], seeds: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run_dir = coordscope.run("mlp-mup", widths=widths, steps=2, seeds=seeds, lr=0.01, out=f"{tmp}/run",
                                 progress=False)
        frame = coordscope.load(run_dir)
        return time.perf_counter() - start, frame.height


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", default="64,128,256,512,1024,2048")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    ours, theirs, bare = [], [], []
    with_coordscope(widths[:2], 1)  # the process's one-off costs (imports, Parquet's first write)
    for _ in range(args.rounds):  # interleaved: load drifts hit all alike
        t, n_mup = with_mup(widths, args.seeds)
        theirs.append(t)
        t, n_ours = with_coordscope(widths, args.seeds)
        ours.append(t)
        bare.append(plain(widths, args.seeds))
    t_mup, t_ours, t_plain = statistics.median(theirs), statistics.median(ours), statistics.median(bare)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; widths {widths}, {args.seeds} seeds, "
          f"3 optimizer steps per job, {args.rounds} rounds")
    print(f"{'':<12} {'wall s':>8} {'statistics':>11}")
    print(f"{'mup':<12} {t_mup:>8.2f} {n_mup:>11}")
    print(f"{'coordscope':<12} {t_ours:>8.2f} {n_ours:>11}")
    print(f"{'plain':<12} {t_plain:>8.2f} {0:>11}   (training only; mup adds {t_mup / t_plain - 1:+.0%}, "
          f"coordscope {t_ours / t_plain - 1:+.0%})")
    print(f"time ratio coordscope/mup = {t_ours / t_mup:.3f}; statistics ratio = {n_ours / n_mup:.1f}x")


if __name__ == "__main__":
    main()
