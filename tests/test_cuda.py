"""On a CUDA device: a recorded step synchronises with the host only for its one transfer of statistics.

Skipped where torch sees no GPU (CI and the development machines); run it on a GPU machine with
``./dev.sh test tests/test_cuda.py``. ``torch.cuda.set_sync_debug_mode("error")`` makes every
synchronising call raise (``.item()``, ``masked_select``, ``nonzero``, a blocking copy to the host), so
a statistic pulled early, or an op with a data-dependent size in a tap, fails the test.
"""

from __future__ import annotations

import pytest
import torch

from coordscope.job import Job, record_job
from coordscope.layers import infer_layers
from coordscope.spec import load_spec
from coordscope.stats import StepStats

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_cuda_step_synchronises_only_for_its_one_transfer(tmp_path, monkeypatch, dtype):
    transfer = StepStats.end

    def end_may_synchronise(self: StepStats):  # the one transfer per step is the allowed sync
        torch.cuda.set_sync_debug_mode(0)
        try:
            return transfer(self)
        finally:
            torch.cuda.set_sync_debug_mode("error")

    monkeypatch.setattr(StepStats, "end", end_may_synchronise)
    spec = load_spec("gpt-mup")
    layers = infer_layers(spec, (64, 128))
    job = Job(spec, 256, 0, 3, 0.03, ("rms", "l1", "absmax"), str(tmp_path), "cuda", layers, device="cuda",
              dtype=dtype)
    try:
        # from step 1 on: step 0 builds the model and the optimizer state, which may synchronise
        record_job(job, on_step=lambda: torch.cuda.set_sync_debug_mode("error"))
    finally:
        torch.cuda.set_sync_debug_mode(0)


def test_own_loop_recording_on_cuda_matches_the_cpu_and_synchronises_once_per_step(tmp_path, monkeypatch):
    """coordscope.recording around a loop whose batches change (an extra pass every step), on the GPU:
    no synchronisation but the step's one transfer, and the statistics of the same loop on the CPU."""
    import torch.nn.functional as F

    import coordscope
    from coordscope.sample_models import mlp

    transfer = StepStats.end

    def end_may_synchronise(self: StepStats):
        torch.cuda.set_sync_debug_mode(0)
        try:
            return transfer(self)
        finally:
            torch.cuda.set_sync_debug_mode("error")

    def loop(device: str) -> object:
        torch.manual_seed(0)
        model = mlp.build(256, "mup").to(device)
        optimizer = torch.optim.Adam(mlp.param_groups(model, "mup", "adam", 0.01), lr=0.01)
        generator = torch.Generator().manual_seed(1)
        batches = [(torch.randn(32, mlp.D_IN, generator=generator).to(device),
                    torch.randint(0, mlp.CLASSES, (32,), generator=generator).to(device)) for _ in range(4)]
        out = tmp_path / device
        with coordscope.recording(model, optimizer, out=out, width=256, batch=batches[0], progress=False,
                                  loss=lambda m, b: F.cross_entropy(m(b[0]), b[1])) as rec:
            for step, (x, y) in enumerate(batches):
                F.cross_entropy(model(x), y).backward()
                optimizer.step()
                optimizer.zero_grad()
                rec.step()
                if step == 0 and device == "cuda":
                    torch.cuda.set_sync_debug_mode("error")
        torch.cuda.set_sync_debug_mode(0)
        return coordscope.load(out).sort("step", "name", "site", "probe")

    monkeypatch.setattr(StepStats, "end", end_may_synchronise)
    try:
        gpu = loop("cuda")
    finally:
        torch.cuda.set_sync_debug_mode(0)
    cpu = loop("cpu")
    assert gpu.select("step", "name", "site").equals(cpu.select("step", "name", "site"))
    assert ((gpu["value"] - cpu["value"]).abs() <= 1e-3 * cpu["value"].abs() + 1e-6).all()
