"""The built-in probes against float64 references, on the tensor layouts the recorder hands them."""

from __future__ import annotations

import math

import pytest
import torch

from coordscope.probe import ProbeContext, probe_sites
from coordscope.probe_select import resolve_probes
from coordscope.sampling import SAMPLE
from coordscope.stats import WHOLE_UPDATES, StepStats

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
            value = spectral(matrix, ctx)
            assert value is not None and 0.9 < float(value / exact) <= 1.0 + 1e-5
    # No operator norm where there is no matrix: an activation, a gradient, a bias
    assert probe_sites(spectral) == frozenset({"param", "param_update"})
    assert spectral(torch.randn(8, 32, generator=generator), ProbeContext("h", "act", (8, 32), None, 32, 0)) is None
    assert spectral(torch.randn(32, generator=generator), ProbeContext("b", "param", (32,), None, 32, 0)) is None


def test_spectral_warm_starts_from_the_previous_update_of_the_same_matrix() -> None:
    """With ``ctx.state`` kept between steps (as a recording keeps it) the probe starts from the vector the
    previous update ended on, and 4 iterations from there measure updates that share their top direction. A
    zero update in between leaves no direction to start from, and the next one is still measured."""
    spectral = resolve_probes(["spectral"])["spectral"]
    generator = torch.Generator().manual_seed(3)
    u, v = torch.randn(256, 1, generator=generator), torch.randn(1, 64, generator=generator)
    state: dict = {}
    for step in range(6):
        # a rank-one direction shared by every step over a Gaussian floor (top singular values 2:1)
        update = (u @ v) * 0.4 + torch.randn(256, 64, generator=generator) if step != 3 else torch.zeros(256, 64)
        exact = float(torch.linalg.matrix_norm(update, ord=2)) / (256 / 64) ** 0.5
        warm = spectral(update, ProbeContext("w", "param_update", (256, 64), None, 64, step, state))
        assert warm is not None and "v" in state
        if step == 3:
            assert float(warm) == 0.0
        else:
            assert 0.99 < float(warm) / exact <= 1.0 + 1e-5, step
    assert ProbeContext("w", "param", (1,), None, 8, 0).state == {}  # each context its own, empty at first


def test_a_probe_recorded_at_the_first_step_only_is_not_called_after_it() -> None:
    """``first_step`` sites (``spectral`` at ``param``: ‖W‖₂ at t = 0) are skipped from step 1 on: the probe
    is not even called there."""
    calls: list[tuple[str, int]] = []

    def norm(x: torch.Tensor, ctx: ProbeContext) -> torch.Tensor:
        calls.append((ctx.site, ctx.step))
        return x.norm()

    norm.sites, norm.first_step = frozenset({"param", "param_update"}), frozenset({"param"})  # type: ignore[attr-defined]
    stats = StepStats({"norm": norm}, {}, 8)
    for step in range(3):
        stats.begin(step)
        stats.add("w", "param", torch.ones(2, 2))
        stats.add("w", "param_update", torch.ones(2, 2))
        stats.end()
    assert calls == [("param", 0), ("param_update", 0), ("param_update", 1), ("param_update", 2)]
    assert resolve_probes(["spectral"])["spectral"].first_step == frozenset({"param"})  # type: ignore[attr-defined]


def test_a_probe_is_queued_only_where_it_applies_and_none_writes_no_row() -> None:
    """Declared sites keep a probe away from the others, and a probe returning None writes no row; the
    sampled measurement of differences stays on where no whole-tensor probe applies."""
    calls: list[str] = []

    def matrices(x: torch.Tensor, ctx: ProbeContext) -> torch.Tensor | None:
        calls.append(ctx.name)
        return x.abs().amax() if x.dim() >= 2 else None

    matrices.sites = frozenset({"param", "param_update"})  # type: ignore[attr-defined]
    stats = StepStats({"rms": resolve_probes("rms")["rms"], "matrices": matrices}, {}, 8)
    # act_delta and updates sampled; the matrices' updates up to WHOLE_UPDATES entries kept whole for the probe
    assert stats.sample == SAMPLE and stats.update_sample == SAMPLE and stats.whole_updates == WHOLE_UPDATES
    stats.begin(0)
    stats.add("w", "param", torch.randn(4, 4))
    stats.add("b", "param", torch.randn(4))
    stats.add("h", "act", torch.randn(2, 4))
    stats.add("w", "param_grad", torch.randn(4, 4))
    columns = stats.end()
    assert sorted(zip(columns["names"], columns["sites"], columns["probes"], strict=True)) == [
        ("b", "param", "rms"), ("h", "act", "rms"), ("w", "param", "matrices"), ("w", "param", "rms"),
        ("w", "param_grad", "rms")]
    assert calls == ["w", "b"]
    assert StepStats(resolve_probes("rms,spectral"), {}, 8).whole_updates == WHOLE_UPDATES
    assert StepStats(resolve_probes("rms,spectral"), {}, 8).sample == SAMPLE
    assert StepStats(resolve_probes("rms"), {}, 8).update_sample == SAMPLE
    assert StepStats(resolve_probes("rms"), {}, 8).whole_updates == 0
    assert StepStats(resolve_probes("rms,absmax"), {}, 8).update_sample is None  # a max needs every entry


def test_a_coord_check_records_spectral_norms_of_matrices_and_judges_them_relative_to_the_weight(tmp_path) -> None:
    """By default (no --probes) a coordinate check records ‖W‖₂ and ‖ΔW‖₂ of every weight matrix, and
    judges ‖ΔW‖₂/‖W‖₂ of the hidden ones: flat under μP, growing under SP with Adam."""
    import coordscope

    grid = {"widths": [64, 128, 256], "steps": 2, "seeds": 2, "progress": False}
    sp = coordscope.check("mlp-sp", out=tmp_path / "sp", **grid)
    assert tuple(sp.meta.probes) == ("rms", "spectral")
    rows = coordscope.load(tmp_path / "sp").filter(probe="spectral")
    assert set(rows["site"]) == {"param", "param_update"}
    assert set(rows["name"]) == {"input.weight", "hidden.0.weight", "hidden.1.weight", "readout.weight"}
    spectral = [f for f in sp.errors if f.probe == "rel_spectral"]
    assert {f.name for f in spectral} == {"hidden.0.weight", "hidden.1.weight"}
    assert all(f.site == "param_update" and f.verdict == "exploding" and f.slope > 0.75 for f in spectral)
    mup = coordscope.check("mlp-mup", out=tmp_path / "mup", **grid)
    judged = mup.fits.filter((mup.fits["probe"] == "rel_spectral") & mup.fits["judged"])
    assert mup.ok and set(judged["name"]) == {"hidden.0.weight", "hidden.1.weight"}
    assert judged["verdict"].to_list() == ["flat"] * judged.height and judged.height >= 4
    weights = rows.filter(site="param")
    assert set(weights["step"]) == {0}  # ‖W‖₂ at t = 0 only; every step's ‖ΔW_t‖₂ is divided by it


def test_spectral_norms_of_updates_are_measured_on_matrices_kept_whole_only(tmp_path) -> None:
    """A matrix above WHOLE_UPDATES entries keeps no whole update (no second copy of a big model): its
    ‖ΔW‖₂ has no row at that width, and nothing estimates it; its ‖W‖₂ (no copy needed) is there."""
    import coordscope

    coordscope.run("mlp-mup", out=tmp_path / "run", widths=[256, 1024], steps=1, seeds=1, progress=False)
    rows = coordscope.load(tmp_path / "run").filter(probe="spectral", name="hidden.0.weight")
    assert 1024 * 1024 > WHOLE_UPDATES >= 256 * 256
    assert sorted(rows.filter(site="param")["width"]) == [256, 1024]
    assert set(rows.filter(site="param_update")["width"]) == {256}
