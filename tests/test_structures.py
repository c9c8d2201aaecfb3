"""Other people's μP structures (sample_models/structures.py): what coordscope records and judges on them.

The pass/fail verdicts of every sample, over three seed sets, are tests/test_dogfood.py's; here, the
structural facts each case turns on, on small real runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import coordscope
from coordscope.cli import main
from coordscope.layers import infer_layers
from coordscope.runmeta import read_meta

FAST = {"widths": [64, 128, 256], "seeds": 1, "progress": False}


def test_a_readout_rescaled_in_forward_is_recorded_but_not_judged_as_the_output(tmp_path: Path) -> None:
    run = coordscope.run("gpt-forward-mult", steps=2, out=tmp_path / "run", **FAST)
    layers = read_meta(run).layers
    assert layers["lm_head"].role == "output" and layers["lm_head"].rescaled
    assert not layers["<output>"].rescaled
    report = coordscope.check(run)
    judged = set(report.judged.filter(report.judged["layer_judged"])["name"].to_list())
    assert "<output>" in judged and "lm_head" not in judged
    assert report.ok, report.render()


class FlatLogits(nn.Module):
    """A readout multiplied in ``forward`` whose logits are also flattened to (tokens, classes) on the way out."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(8, width)
        self.lm_head = nn.Linear(width, 5)
        self.width = width

    def forward(self, x):  # type: ignore[no-untyped-def]
        return (self.lm_head(torch.relu(self.hidden(x))) * (64 / self.width)).reshape(-1, 5)


def test_a_rescaled_readout_whose_logits_are_reshaped_is_still_the_rescaled_readout() -> None:
    def batches():  # type: ignore[no-untyped-def]
        while True:
            yield torch.randn(4, 3, 8), torch.randint(0, 5, (12,))

    spec = coordscope.Spec(model=FlatLogits, batches=batches)
    layers = infer_layers(spec, (64, 128))
    assert layers["lm_head"].role == "output" and layers["lm_head"].rescaled
    assert layers["lm_head"].shape != layers["<output>"].shape  # same entries, another shape


def test_a_readout_that_is_the_output_is_judged_as_it(tmp_path: Path) -> None:
    run = coordscope.run("gpt-mup", steps=1, out=tmp_path / "run", **FAST)
    assert not read_meta(run).layers["lm_head"].rescaled  # mup-style: the multiplier inside the module


@pytest.mark.parametrize(("sample", "regime"), [("gpt-zero-readout", "undetermined"),
                                               ("gpt-zero-readout-plain-adam", "SP-like (exploding)")])
def test_a_zero_readout_checked_for_one_step_cannot_pass(tmp_path: Path, sample: str, regime: str) -> None:
    """One step: every hidden act_delta is exactly 0 at t = 1, so those layers cannot be judged and the
    check fails asking for more steps. The weights' updates at t = 1 are there, though, and relative to the
    weights they already show plain Adam's hidden updates growing with width."""
    result = CliRunner().invoke(main, ["check", sample, "--widths", "64,128,256",
                                       "--seeds", "1", "--steps", "1", "--out", str(tmp_path / "r"), "--format", "json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    undetermined = [f for f in report["findings"] if f["verdict"] == "undetermined"]
    assert undetermined and all(f["severity"] == "error" for f in undetermined)
    assert all("more steps" in f["hint"] for f in undetermined)
    assert report["regime"] == regime
    named = {(f["probe"], f["rule"]) for f in report["findings"] if f["site"] == "param_update"}
    assert named == (set() if regime == "undetermined" else {("rel_rms", "plain_adam"), ("rel_spectral", "plain_adam")})


def test_more_steps_show_the_plain_adam_bug_behind_a_zero_readout(tmp_path: Path) -> None:
    report = coordscope.check("gpt-zero-readout-plain-adam", steps=3, out=tmp_path / "r", **FAST)
    assert not report.ok
    assert "plain_adam" in {d.rule for d in report.diagnoses}
    assert not [f for f in report.errors if f.verdict == "undetermined"]


def test_a_frozen_layer_that_never_changes_is_not_an_error(tmp_path: Path) -> None:
    """act_delta exactly 0 over several steps: a layer that does not train, shown but not failed."""
    def model(width: int) -> nn.Module:
        net = nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 4))
        net[0].requires_grad_(False)
        return net

    import torch

    spec = coordscope.Spec(model=model, batches=lambda: iter([(torch.randn(16, 8), torch.randint(0, 4, (16,)))]),
                           ref="frozen")
    run = coordscope.run(spec, steps=3, lr=1e-3, out=tmp_path / "r", **FAST)
    report = coordscope.check(run)
    frozen = report.layers.filter((report.layers["name"] == "0") & (report.layers["site"] == "act_delta"))
    assert frozen["verdict"].to_list() == ["undetermined"] and frozen["severity"].to_list() == ["info"]


def test_one_module_calling_sdpa_twice_records_attention_logits_for_each_call(tmp_path: Path) -> None:
    run = coordscope.run("gpt-parent-attn", steps=1, out=tmp_path / "r", **FAST)
    roles = {name: layer.role for name, layer in read_meta(run).layers.items() if "attn_logits" in name}
    assert roles == {"attn_logits": "attn_logits", "attn_logits#1": "attn_logits"}


@pytest.mark.parametrize(("sample", "init_slope"), [("gpt-eager-attn", -0.5), ("gpt-eager-attn-sqrt-d", 0.0)])
def test_attention_written_with_matmul_and_softmax_is_recorded(tmp_path: Path, sample: str, init_slope: float) -> None:
    run = coordscope.run(sample, steps=1, seeds=[0, 1], widths=[64, 128, 256], out=tmp_path / "r", progress=False)
    layers = read_meta(run).layers
    assert {n for n, layer in layers.items() if layer.role == "attn_logits"} == {
        "blocks.0.attn.attn_logits", "blocks.1.attn.attn_logits"}
    fits = coordscope.check(run).fits
    t0 = fits.filter((fits["name"] == "blocks.0.attn.attn_logits") & (fits["site"] == "act") & (fits["step"] == 0))
    assert abs(t0["slope"][0] - init_slope) < 0.15  # 1/d: d_head^-0.5 at init; 1/√d: flat
