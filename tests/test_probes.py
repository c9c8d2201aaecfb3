"""The built-in probes against float64 references, on the tensor layouts the recorder hands them."""

from __future__ import annotations

import math

import pytest
import torch

from coordscope.probe import ProbeContext
from coordscope.probe_select import resolve_probes

CTX = ProbeContext("x", "act", (), None, 8, 0)


def reference(x: torch.Tensor) -> dict[str, float]:
    d = x.double()
    if d.numel() == 0:
        return {"rms": 0.0, "l1": math.nan, "absmax": 0.0}
    return {"rms": float(d.pow(2).mean().sqrt()), "l1": float(d.abs().mean()), "absmax": float(d.abs().max())}


LAYOUTS = {
    "contiguous": lambda: torch.randn(8, 16, 64),
    "transposed": lambda: torch.randn(64, 32).t(),  # strided: rms takes the norm kernel, no copy
    "sliced": lambda: torch.randn(10, 10)[:, ::3],
    "scalar": lambda: torch.tensor(-2.5),
    "large": lambda: torch.randn(1 << 20) * 1e-3 + 2e-3,  # a 4 MB weight, where accumulation error shows
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_builtin_probes_match_a_float64_reference(layout):
    torch.manual_seed(0)
    x = LAYOUTS[layout]()
    want = reference(x)
    for name, probe in resolve_probes("rms,l1,absmax").items():
        value = probe(x, CTX)
        assert value.dim() == 0 and value.dtype == torch.float32
        assert float(value) == pytest.approx(want[name], rel=5e-6), name


def test_rms_of_an_empty_tensor_is_zero_and_non_finite_values_propagate():
    rms = resolve_probes("rms")["rms"]
    assert float(rms(torch.empty(0, 4), CTX)) == 0.0
    assert math.isinf(float(rms(torch.tensor([1.0, math.inf]), CTX)))
    assert math.isnan(float(rms(torch.tensor([1.0, math.nan]), CTX)))
    assert math.isinf(float(rms(torch.full((8,), 1e30), CTX)))  # overflow is flagged, as it always was


def test_spectral_probe_is_the_operator_norm_over_the_spectral_scale() -> None:
    spectral = resolve_probes(["spectral"])["spectral"]
    generator = torch.Generator().manual_seed(1)
    for fan_out, fan_in in ((64, 64), (256, 32), (16, 512)):
        for matrix in (torch.randn(fan_out, fan_in, generator=generator),
                       torch.randn(fan_out, 3, generator=generator) @ torch.randn(3, fan_in, generator=generator)):
            ctx = ProbeContext("w", "param_update", (fan_out, fan_in), (True, True), fan_out, 0)
            exact = torch.linalg.matrix_norm(matrix, ord=2) / (fan_out / fan_in) ** 0.5
            assert 0.9 < float(spectral(matrix, ctx) / exact) <= 1.0 + 1e-5
    activation = torch.randn(8, 32, generator=generator)
    ctx = ProbeContext("h", "act", (8, 32), (False, True), 32, 0)
    assert torch.allclose(spectral(activation, ctx), activation.pow(2).mean().sqrt())  # not a weight: its rms


def test_spectral_norms_of_hidden_updates_are_judged_when_recorded(tmp_path) -> None:
    import coordscope

    grid = {"widths": [64, 128, 256], "steps": 2, "seeds": 2, "probes": "rms,spectral", "progress": False}
    sp = coordscope.check("mlp-sp", out=tmp_path / "sp", **grid)
    spectral = [f for f in sp.errors if f.probe == "spectral"]
    assert {f.name for f in spectral} == {"hidden.0.weight", "hidden.1.weight"}
    assert all(f.site == "param_update" and f.verdict == "exploding" and f.slope > 0.75 for f in spectral)
    mup = coordscope.check("mlp-mup", out=tmp_path / "mup", **grid)
    assert mup.ok and mup.fits.filter((mup.fits["probe"] == "spectral") & mup.fits["judged"]).height == 2 * 3
