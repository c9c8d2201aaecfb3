"""Peak memory of recording: a recorded job over the same plain training, side by side, each in a fresh process.

    python benchmarks/memory.py                        # the issue's cases: MLP at 4096, GPT at its largest width
    python benchmarks/memory.py --case mlp-mup:2048 --steps 20
    python benchmarks/memory.py --flat                 # issue 7: a 500-step job against a 10-step job
    python benchmarks/memory.py --device cuda          # on a GPU: peak allocated device memory instead

Each configuration runs as it would really run, in a new Python process: ``plain`` is the user's training
script — build the sample's model, its optimizer and the fixed batch, train ``--steps`` steps, nothing
else imported; ``recording`` is the same script with ``coordscope.recording`` around its loop (the
own-loop recorder, Parquet shard and ``meta.json`` included); ``job`` is what a ``coordscope run`` worker
runs for one width × seed with its default probes, ``rms`` and ``spectral``
(:func:`coordscope.job.record_job`). Each process prints its peak resident memory (``ru_maxrss``), and the
ratios to ``plain`` are printed. Target (issue 19): at most 1.15. The recorded runs keep no copy of the
parameters (:mod:`coordscope.sampling`; ``spectral`` keeps whole updates of matrices up to 512 × 512 only);
``--exact`` shows what keeping whole copies costs.

``--flat`` keeps issue 7's check: peak memory of a 500-step job over a 10-step job (within 10 %).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, sys, tempfile
mode, sample, width, steps, exact = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
device = sys.argv[6]
import torch
torch.set_num_threads(1)
from coordscope.spec import load_spec, build_model, first_batch
from coordscope.device import seed_everything, to_device
spec = load_spec(sample)
if mode == "job":
    from coordscope.job import Job, record_job
    from coordscope.layers import infer_layers
    layers = infer_layers(spec, (64, 128))
    with tempfile.TemporaryDirectory() as tmp:
        from coordscope.settings import COORDCHECK_PROBES
        record_job(Job(spec, width, 0, steps - 1, 0.01, COORDCHECK_PROBES, tmp, "mem", layers, device=device,
                       exact=exact))
else:
    seed_everything(0)
    model = build_model(spec, width).to(device)
    batch = to_device(first_batch(spec), device, torch.float32)
    optimizer = spec.make_optimizer(model, 0.01)
    def train(step=lambda: None):
        for _ in range(steps):
            loss = spec.compute_loss(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step()
    if mode == "plain":
        train()
    else:
        import coordscope
        with tempfile.TemporaryDirectory() as tmp:
            with coordscope.recording(model, optimizer, out=tmp + "/run", width=width, exact=exact,
                                      progress=False) as rec:
                train(rec.step)
if device == "cpu":
    print(json.dumps({"peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
else:
    print(json.dumps({"peak_kib": torch.cuda.max_memory_allocated() // 1024}))
"""

FLAT = r"""
import json, resource, sys, tempfile
from coordscope.device import seed_everything
from coordscope.job import Job, record_job
from coordscope.layers import infer_layers
from coordscope.spec import build_model, first_batch, load_spec
sample, width, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
spec = load_spec(sample)
layers = infer_layers(spec, (64, 128))
seed_everything(0); model = build_model(spec, width); batch = first_batch(spec)
opt = spec.make_optimizer(model, 0.01)
for _ in range(3):
    loss = spec.compute_loss(model, batch); opt.zero_grad(); loss.backward(); opt.step()
with tempfile.TemporaryDirectory() as tmp:
    record_job(Job(spec, width, 0, 2, 0.01, ("rms",), tmp, "warm", layers))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with tempfile.TemporaryDirectory() as tmp:
    record_job(Job(spec, width, 0, steps, 0.01, ("rms",), tmp, "mem", layers))
print(json.dumps({"base_kib": base, "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

ENV = {"OMP_NUM_THREADS": "1", "PATH": ""}


def peak(mode: str, sample: str, width: int, steps: int, exact: bool, device: str = "cpu") -> int:
    """Peak memory in KiB of one fresh process: resident memory on the CPU, allocated device memory on CUDA."""
    out = subprocess.run([sys.executable, "-c", CHILD, mode, sample, str(width), str(steps), "1" if exact else "0",
                          device], check=True, capture_output=True, text=True,
                         env={**ENV, **{k: v for k, v in os.environ.items() if k.startswith("CUDA")}}).stdout
    return int(json.loads(out.strip().splitlines()[-1])["peak_kib"])


def largest_width(sample: str) -> int:
    from coordscope.spec import load_spec

    return int(max(load_spec(sample).defaults.get("widths", [512])))


def side_by_side(cases: list[str], steps: int, repeats: int, exact: bool, device: str = "cpu") -> None:
    modes = ("plain", "recording", "job")
    what = "peak resident memory (ru_maxrss)" if device == "cpu" else f"peak {device} memory allocated"
    print(f"{what}, {steps} training steps, a fresh process each, median of {repeats}"
          + (", exact=True" if exact else ""))
    print(f"{'case':<16} {'plain MiB':>10} {'recording MiB':>14} {'job MiB':>9} {'recording/plain':>16} "
          f"{'job/plain':>10}")
    for case in cases:
        sample, _, width_text = case.partition(":")
        width = int(width_text) if width_text else largest_width(sample)
        runs: dict[str, list[int]] = {mode: [] for mode in modes}
        for _ in range(repeats):  # interleaved: drifts in the machine's state hit every configuration
            for mode in modes:
                runs[mode].append(peak(mode, sample, width, steps, exact, device))
        kib = {mode: statistics.median(values) for mode, values in runs.items()}
        print(f"{sample + ':' + str(width):<16} {kib['plain'] / 1024:>10.1f} {kib['recording'] / 1024:>14.1f} "
              f"{kib['job'] / 1024:>9.1f} {kib['recording'] / kib['plain']:>16.3f} {kib['job'] / kib['plain']:>10.3f}")
    print("target (issue 19): recorded / plain <= 1.15")


def flat(sample: str, width: int, steps: str) -> None:
    short, long = (int(s) for s in steps.split(","))
    results = []
    for n in (short, long):
        out = subprocess.run([sys.executable, "-c", FLAT, sample, str(width), str(n)], check=True,
                             capture_output=True, text=True, env=ENV).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    a, b = results
    print(f"{sample} width {width}: peak RSS {a['peak_kib'] / 1024:.1f} MiB ({short} steps) vs "
          f"{b['peak_kib'] / 1024:.1f} MiB ({long} steps); peak ratio {long}/{short} steps = "
          f"{b['peak_kib'] / a['peak_kib']:.3f} (target <= 1.10)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", action="append", help="sample:width (repeatable; width defaults to the sample's "
                                                        "largest)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--exact", action="store_true", help="record with exact=True (whole copies)")
    parser.add_argument("--device", default="cpu", help="cpu (peak RSS) or cuda (peak allocated device memory)")
    parser.add_argument("--flat", action="store_true", help="issue 7's check instead: 500 steps against 10")
    args = parser.parse_args()
    if args.flat:
        flat("mlp-mup", 512, "10,500")
        return
    side_by_side(args.case or ["mlp-mup:4096", "gpt-mup"], args.steps, args.repeats, args.exact, args.device)


if __name__ == "__main__":
    main()
