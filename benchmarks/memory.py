"""Memory flat in steps: peak resident memory of recording a 500-step job over a 10-step job, the model,
its optimizer state and the fixed batch excluded (each job runs in a fresh process, which notes its memory
after building everything a plain training run would hold, then records). Target (issue 7): within 10%.
Measured twice: in a process as Python starts it (the API's case) and with freed memory kept, as the
command line and worker processes run (:mod:`coordscope.heap`).

    python benchmarks/memory.py [--sample mlp-mup] [--width 512] [--steps 10,500]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, tempfile, torch
from coordscope.device import seed_everything
from coordscope.job import Job, record_job
from coordscope.layers import infer_layers
from coordscope.spec import build_model, first_batch, load_spec
sample, width, steps, kept = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "kept"
if kept:
    from coordscope.heap import keep_freed_memory
    keep_freed_memory()
spec = load_spec(sample)
layers = infer_layers(spec, (64, 128))
# warm-up: a plain job of the same model, so allocator pools and lazy imports are in the baseline
seed_everything(0); model = build_model(spec, width); batch = first_batch(spec)
opt = spec.make_optimizer(model, 0.01)
for _ in range(3):
    loss = spec.compute_loss(model, batch); opt.zero_grad(); loss.backward(); opt.step()
with tempfile.TemporaryDirectory() as tmp:
    record_job(Job(spec, width, 0, 2, 0.01, ("rms",), tmp, "warm", layers))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with tempfile.TemporaryDirectory() as tmp:
    record_job(Job(spec, width, 0, steps, 0.01, ("rms",), tmp, "mem", layers))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"base_kib": base, "peak_kib": peak}))
"""


def measure(sample: str, width: int, steps: int, heap: str) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, sample, str(width), str(steps), heap], check=True,
                         capture_output=True, text=True, env={"OMP_NUM_THREADS": "1", "PATH": ""}).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", default="mlp-mup")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--steps", default="10,500")
    args = parser.parse_args()
    short, long = (int(s) for s in args.steps.split(","))
    for heap in ("default", "kept"):
        a, b = measure(args.sample, args.width, short, heap), measure(args.sample, args.width, long, heap)
        grow_a, grow_b = a["peak_kib"] - a["base_kib"], b["peak_kib"] - b["base_kib"]
        print(f"{args.sample} width {args.width}, heap {heap}: peak RSS {a['peak_kib'] / 1024:.1f} MiB "
              f"({short} steps) vs {b['peak_kib'] / 1024:.1f} MiB ({long} steps); growth over the warmed-up "
              f"baseline {grow_a / 1024:.2f} MiB vs {grow_b / 1024:.2f} MiB; "
              f"peak ratio {long}/{short} steps = {b['peak_kib'] / a['peak_kib']:.3f}")


if __name__ == "__main__":
    main()
