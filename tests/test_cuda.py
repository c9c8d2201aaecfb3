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
