"""Shared fixtures: keep torch to one thread per test process so the suite behaves on small machines."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def mlp_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Recorded runs of the MLP samples (widths 64..512, 5 steps, 3 seeds), shared by the whole session."""
    import coordscope

    root = tmp_path_factory.mktemp("mlp-runs")
    return {
        name: str(coordscope.run(name, widths=[64, 128, 256, 512], steps=5, seeds=3, out=root / name,
                                 progress=False))
        for name in ("mlp-mup", "mlp-sp", "mlp-ntk")
    }
