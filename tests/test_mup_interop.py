"""Models built with the real ``mup`` package (MuReadout, set_base_shapes, MuAdam) are checked as they are, and
:mod:`coordscope.mup_compat` reproduces ``mup.coord_check.get_coord_data``'s frame."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn

import coordscope
from coordscope import Spec
from coordscope.mup_compat import get_coord_data, mup_module_name

mup = pytest.importorskip("mup")
mup_coord_check = pytest.importorskip("mup.coord_check")

D_IN, CLASSES, BATCH = 16, 10, 32
BASE, DELTA = 32, 64
WIDTHS = [64, 128, 256, 512]


class MupMLP(nn.Module):
    """The MLP of mup's README: Linear layers, ReLU modules, a MuReadout."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.input = nn.Linear(D_IN, width)
        self.act1 = nn.ReLU()
        self.hidden = nn.Linear(width, width)
        self.act2 = nn.ReLU()
        self.readout = mup.MuReadout(width, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.act2(self.hidden(self.act1(self.input(x)))))


def build(width: int, seed: int | None = None) -> MupMLP:
    """A μP model the way mup's README makes one; ``seed`` makes the init independent of call order."""
    base, delta = MupMLP(BASE), MupMLP(DELTA)
    if seed is not None:
        torch.manual_seed(seed)
    model = MupMLP(width)
    mup.set_base_shapes(model, base, delta=delta)
    return model


def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    while True:
        yield torch.randn(BATCH, D_IN), torch.randint(0, CLASSES, (BATCH,))


def spec(optimizer: Callable[[nn.Module, float], torch.optim.Optimizer]) -> Spec:
    return Spec(model=build, batches=batches, optimizer=optimizer, ref="mup-mlp")


MU_ADAM = spec(lambda model, lr: mup.MuAdam(model.parameters(), lr=lr))
PLAIN_ADAM = spec(lambda model, lr: torch.optim.Adam(model.parameters(), lr=lr))


def test_roles_come_from_infshape(tmp_path) -> None:
    run_dir = coordscope.run(MU_ADAM, widths=[64, 128], steps=1, seeds=1, out=tmp_path / "run", progress=False)
    layers = coordscope.read_meta(run_dir).layers
    roles = {name: layers[name].role for name in ("input.weight", "hidden.weight", "readout.weight",
                                                     "hidden.bias", "readout.bias")}
    assert roles == {"input.weight": "input", "hidden.weight": "hidden", "readout.weight": "output",
                     "hidden.bias": "vector", "readout.bias": "fixed"}


@pytest.mark.slow
@pytest.mark.parametrize("seeds", [[0, 1], [2, 3]])
def test_mup_model_with_muadam_passes_and_with_plain_adam_fails(seeds: list[int], tmp_path) -> None:
    good = coordscope.check(MU_ADAM, widths=WIDTHS, steps=5, seeds=seeds, lr=0.01, out=tmp_path / "good",
                            progress=False)
    assert good.ok, [(f.name, f.site, f.slope) for f in good.errors]
    bad = coordscope.check(PLAIN_ADAM, widths=WIDTHS, steps=5, seeds=seeds, lr=0.01, out=tmp_path / "bad",
                           progress=False)
    assert not bad.ok
    blamed = {f.name for f in bad.findings if f.rule == "plain_adam"}
    assert "hidden" in blamed, [(f.name, f.site, f.rule) for f in bad.findings]


@pytest.mark.parametrize(("optimizer", "use_mup", "lr"), [("adam", True, 0.01), ("sgd", True, 0.1),
                                                          ("adam", False, 0.01)])
def test_adapter_matches_mup_get_coord_data(optimizer: str, use_mup: bool, lr: float, tmp_path) -> None:
    """Same models, same batch: the same modules, t values and l1 statistics as mup's own coord check."""
    models = {w: (lambda w=w: build(w, seed=0)) for w in (64, 128, 256)}
    torch.manual_seed(1)
    data = [next(batches())]
    ours = get_coord_data(models, data, optimizer=optimizer, lr=lr, mup=use_mup, nsteps=3, out=tmp_path / "run",
                          show_progress=False)
    theirs = mup_coord_check.get_coord_data(models, data, optimizer=optimizer, lr=lr, mup=use_mup, nsteps=3,
                                            cuda=False, show_progress=False)
    assert list(ours.columns) == list(theirs.columns) == ["width", "module", "t", "l1", "optimizer", "lr"]
    keys = ["width", "module", "t"]
    assert sorted(map(tuple, ours[keys].values.tolist())) == sorted(map(tuple, theirs[keys].values.tolist()))
    merged = theirs.merge(ours, on=keys, suffixes=("_mup", "_coordscope"))
    assert len(merged) == len(theirs)
    torch.testing.assert_close(torch.tensor(merged["l1_coordscope"].values),
                               torch.tensor(merged["l1_mup"].values), rtol=1e-5, atol=1e-7)
    assert (ours["optimizer"] == optimizer).all() and (ours["lr"] == lr).all()
    assert ours.attrs["run_dir"] == str(tmp_path / "run")


def test_adapter_takes_a_spec_and_drops_taps(tmp_path) -> None:
    frame = get_coord_data("gpt-mup", nsteps=2, out=tmp_path / "run", show_progress=False)
    assert set(frame["t"]) == {1, 2}
    assert "" in set(frame["module"]) and not any("attn_logits" in m for m in frame["module"])
    assert set(frame["width"]) == {64, 128, 256, 512} and (frame["l1"] > 0).all()


@pytest.mark.parametrize(("name", "expected"), [("<output>", ""), ("blocks.0.mlp", "blocks.0.mlp"),
                                                ("lstm[0]", "lstm:out[0]"), ("lstm[1][0]", "lstm:out[1][0]"),
                                                ("shared#2", "shared"), ("enc#1[key]", "enc:out[key]")])
def test_module_names_follow_mup(name: str, expected: str) -> None:
    assert mup_module_name(name) == expected


def test_set_base_shapes_none_is_standard_parametrization_with_roles_from_shapes(tmp_path) -> None:
    """mup's examples run SP through mup with set_base_shapes(model, None): every infshape then says that
    nothing scales, so the roles come from the shapes at two widths, and the check sees an SP model."""
    def build_sp(width: int) -> MupMLP:
        model = MupMLP(width)
        mup.set_base_shapes(model, None)
        return model

    sp = Spec(model=build_sp, batches=batches, optimizer=lambda model, lr: mup.MuAdam(model.parameters(), lr=lr),
              ref="mup-mlp-sp")
    run_dir = coordscope.run(sp, widths=[64, 128, 256], steps=3, seeds=2, out=tmp_path / "run", progress=False)
    layers = coordscope.read_meta(run_dir).layers
    assert {n: layers[n].role for n in ("input.weight", "hidden.weight", "readout.weight")} == {
        "input.weight": "input", "hidden.weight": "hidden", "readout.weight": "output"}
    report = coordscope.check(run_dir)
    assert not report.ok and any(f.name == "readout" and f.verdict == "exploding" for f in report.errors)
