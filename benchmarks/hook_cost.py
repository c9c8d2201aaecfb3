"""Why a recorder hook costs more inside a training step than in a loop of its own: the first work after a
big kernel runs with cold caches.

A recorder hook runs right after the module it watches has computed. This script times, in one process,
the same work twice: *hot* — called back to back, as a micro-benchmark calls it — and *after a matmul* — called
once right after a ``linear`` of the GPT sample's MLP at width 512 (128 tokens × 512 → 2048), as a hook is
called in a real step. The work:

- ``python``: a loop of 50 additions in pure Python (no torch at all);
- ``torch add``: one torch op on a 1-element tensor;
- ``activation``: what the recorder does with one activation at a step after step 0
  (:meth:`coordscope.stats.StepStats.activation` with ``rms``: Σx² of the 128 × 2048 output, and its change
  from step 0 on the sampled entries).

It prints each median and the ratio *after a matmul* / *hot*. The GPT sample's recorder has about 40 such
entries per step (21 outputs in the forward pass, 19 gradients in the backward pass), so the gap, times 40,
is what hooks cost on top of their micro-benchmarked work; plain training pays the same cold start in its
own next op; how much of the gap it would pay anyway is not measured here.

    python benchmarks/hook_cost.py
    python benchmarks/hook_cost.py --repeats 500
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from coordscope.probes import builtin
from coordscope.stats import StepStats


def timed(work: Callable[[], object], before: Callable[[], object] | None, repeats: int) -> float:
    """Median seconds of ``work``; with ``before``, each timing starts right after a call of it."""
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    torch.manual_seed(0)
    tokens, width = torch.randn(128, 512), torch.randn(2048, 512)
    output = F.linear(tokens, width)
    stats = StepStats({"rms": builtin.rms}, {}, 512)
    stats.activation("mlp.c_fc", "act", output, "Linear")  # step 0: keeps the sampled entries
    stats.begin(1)
    one = torch.ones(1)

    def python() -> int:
        total = 0
        for i in range(50):
            total += i
        return total

    def activation() -> None:
        stats.begin(1)  # an empty queue each time, as at the start of a step
        stats.activation("mlp.c_fc", "act", output, "Linear")

    def matmul() -> None:
        torch.matmul(tokens, width.T, out=output)

    cases: dict[str, Callable[[], object]] = {"python": python, "torch add": lambda: one + one,
                                              "activation": activation}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'work':<12} {'hot us':>8} {'after a matmul us':>18} {'ratio':>7}")
    for name, work in cases.items():
        timed(work, matmul, 20)  # warm-up
        hot = timed(work, None, args.repeats)
        cold = timed(work, matmul, args.repeats)
        print(f"{name:<12} {hot * 1e6:>8.1f} {cold * 1e6:>18.1f} {cold / hot:>7.1f}")


if __name__ == "__main__":
    main()
