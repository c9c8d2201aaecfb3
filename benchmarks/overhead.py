"""Instrumentation overhead: time per training step with coordscope recording every site (default probes)
over the same steps of plain training, measured side by side, interleaved, in one process.

    python benchmarks/overhead.py                       # MLP at 1024 and 2048, GPT at 512 if present
    python benchmarks/overhead.py --case mlp-mup:1024 --steps 20 --rounds 5

Prints, per case, the median plain and instrumented step time and their ratio (targets: ≤ 1.3 for the MLP
at 1024, issue 2; ≤ 1.25 for the MLP at 2048 and the GPT at 512, issue 7). Step 0 (warm-up) is excluded
from both.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from coordscope.job import Job, record_job, seed_everything
from coordscope.probe import DEFAULT_PROBES
from coordscope.sample_models import SAMPLES
from coordscope.shapes import infer_layers
from coordscope.spec import Spec, build_model, first_batch, load_spec


def plain_step_time(spec: Spec, width: int, steps: int, lr: float, device: str) -> float:
    """Seconds per step of ordinary training (forward, loss, backward, optimizer step)."""
    seed_everything(0)
    model = build_model(spec, width).to(device)
    from coordscope.job import to_device

    batch = to_device(first_batch(spec), device, torch.float32)
    optimizer = spec.make_optimizer(model, lr)
    marks = []
    for _ in range(steps + 1):
        loss = spec.compute_loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        marks.append(time.perf_counter())
    return (marks[-1] - marks[0]) / steps


def recorded_step_time(spec: Spec, width: int, steps: int, lr: float, device: str, layers: dict) -> float:
    """Seconds per step with coordscope recording every site into a Parquet shard."""
    marks: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        job = Job(spec, width, 0, steps, lr, DEFAULT_PROBES, tmp, "bench", layers, device=device)
        record_job(job, on_step=lambda: marks.append(time.perf_counter()))
    return (marks[-1] - marks[0]) / steps


def measure(case: str, steps: int, rounds: int, device: str) -> tuple[float, float, float]:
    name, _, width_text = case.partition(":")
    width = int(width_text)
    spec = load_spec(name)
    lr = float(spec.defaults.get("lr", 0.01))
    layers = infer_layers(spec, (64, 128))
    plain, recorded = [], []
    for _ in range(rounds):  # interleaved, so drifts in machine load hit both alike
        plain.append(plain_step_time(spec, width, steps, lr, device))
        recorded.append(recorded_step_time(spec, width, steps, lr, device, layers))
    p, r = statistics.median(plain), statistics.median(recorded)
    return p, r, r / p


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", action="append", help="sample:width (repeatable)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    cases = args.case or ["mlp-mup:1024", "mlp-mup:2048"] + (["gpt-mup:512"] if "gpt-mup" in SAMPLES else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"{args.steps} steps x {args.rounds} rounds")
    print(f"{'case':<16} {'plain ms/step':>14} {'recorded ms/step':>17} {'ratio':>7}")
    for case in cases:
        p, r, ratio = measure(case, args.steps, args.rounds, args.device)
        print(f"{case:<16} {p * 1e3:>14.2f} {r * 1e3:>17.2f} {ratio:>7.3f}")


if __name__ == "__main__":
    main()
