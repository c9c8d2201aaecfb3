"""How close the ``spectral`` probe's power iteration comes to the exact operator norm of real updates.

For each sample and width, the sample's model trains on its fixed batch with its own optimizer, and every
matrix update ΔW_t = W_{t+1} − W_t (of a matrix the recorder keeps whole: at most
:data:`coordscope.stats.WHOLE_UPDATES` entries) is measured three ways:

- ``recorded``: the probe as a recording calls it, its ``ctx.state`` kept from step to step (8 power
  iterations from a fixed start at the first update, then 4 from the previous update's vector);
- ``cold 8``: 8 iterations from the fixed start at every step (what the probe did before the warm start);
- exact: ``torch.linalg.matrix_norm(ΔW, ord=2)``.

It prints, per estimate, the ratio to the exact norm (median and worst over matrices, steps and widths) and
the error that matters for a verdict: how far the ratio drifts between the smallest and largest width, as
a slope per doubling of width (the largest over matrices and steps).

    python benchmarks/spectral_error.py
    python benchmarks/spectral_error.py --samples gpt-mup,mlp-muon --widths 64,256 --steps 12
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch

from coordscope.device import seed_everything
from coordscope.probe import ProbeContext
from coordscope.probes.builtin import spectral
from coordscope.spec import build_model, first_batch, load_spec, make_optimizer
from coordscope.stats import WHOLE_UPDATES

SAMPLES = "gpt-mup,mlp-mup,mlp-mup-sgd,mlp-muon,mlp-sp,mlp-schedulefree"


def updates(sample: str, width: int, steps: int) -> dict[str, list[torch.Tensor]]:
    """Every step's update of each matrix of at most WHOLE_UPDATES entries, by parameter name."""
    spec = load_spec(sample)
    seed_everything(0)
    model = build_model(spec, width)
    batch = first_batch(spec)
    optimizer = make_optimizer(spec, model, float(spec.defaults.get("lr", 0.01)), width)
    found: dict[str, list[torch.Tensor]] = {}
    for _ in range(steps):
        before = {n: p.detach().clone() for n, p in model.named_parameters()
                  if p.dim() >= 2 and p.numel() <= WHOLE_UPDATES}
        loss = spec.compute_loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        for name, p in model.named_parameters():
            if name in before:
                found.setdefault(name, []).append(p.detach() - before[name])
    return found


def ratios(name: str, width: int, sequence: list[torch.Tensor]) -> dict[str, list[float]]:
    """Each estimate over the exact norm, step by step."""
    state: dict = {}
    out: dict[str, list[float]] = {"recorded": [], "cold 8": []}
    for step, delta in enumerate(sequence):
        fan_out, fan_in = delta.shape[0], delta[0].numel()
        exact = float(torch.linalg.matrix_norm(delta.reshape(fan_out, -1), ord=2)) / math.sqrt(fan_out / fan_in)
        if exact == 0:
            continue
        for estimate, kept in (("recorded", state), ("cold 8", {})):
            ctx = ProbeContext(name, "param_update", tuple(delta.shape), None, width, step, kept)
            value = spectral(delta, ctx)
            assert value is not None
            out[estimate].append(float(value) / exact)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", default=SAMPLES)
    parser.add_argument("--widths", default="64,512")
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    doublings = math.log2(widths[-1] / widths[0])
    print(f"torch {torch.__version__}; widths {widths}, {args.steps} updates each")
    print(f"{'sample':<18} {'estimate':<9} {'median':>7} {'worst':>7} {'matrices':>9} {'drift/doubling':>15}")
    for sample in args.samples.split(","):
        found = {w: updates(sample, w, args.steps) for w in widths}
        by_width = {w: {name: ratios(name, w, seq) for name, seq in found[w].items()} for w in widths}
        for estimate in ("recorded", "cold 8"):
            values = [r for w in widths for per in by_width[w].values() for r in per[estimate]]
            drifts = [abs(math.log2(a) - math.log2(b)) / doublings
                      for name in by_width[widths[0]] if name in by_width[widths[-1]]
                      for a, b in zip(by_width[widths[0]][name][estimate], by_width[widths[-1]][name][estimate],
                                      strict=False)]
            print(f"{sample:<18} {estimate:<9} {statistics.median(values):>7.3f} {min(values):>7.3f} "
                  f"{len(found[widths[0]]):>9} {max(drifts, default=0.0):>15.4f}")


if __name__ == "__main__":
    main()
