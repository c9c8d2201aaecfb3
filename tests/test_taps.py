"""The SDPA tap's scope: logits recorded wherever SDPA is called, the torch function mode active nowhere else."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import coordscope
from coordscope import Spec
from coordscope.roles import Layer
from coordscope.taps import sdpa_callers, sdpa_scope


def mode_on() -> bool:
    return bool(torch._C._is_torch_function_mode_enabled())


class Attention(nn.Module):
    def __init__(self, width: int, seen: list[tuple[str, bool]]) -> None:
        super().__init__()
        self.qkv = nn.Linear(width, 3 * width)
        self.seen = seen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(("attn", mode_on()))
        q, k, v = self.qkv(x).unsqueeze(1).chunk(3, dim=-1)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True).squeeze(1)


class Mlp(nn.Linear):
    def __init__(self, width: int, seen: list[tuple[str, bool]]) -> None:
        super().__init__(width, width)
        self.seen = seen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(("mlp", mode_on()))
        return super().forward(x)


class Net(nn.Module):
    """An attention block beside a plain layer, and one more SDPA call in the model's own forward."""

    SEEN: list[tuple[str, bool]] = []

    def __init__(self, width: int) -> None:
        super().__init__()
        self.embed = nn.Linear(3, width)
        self.attn = Attention(width, Net.SEEN)
        self.mlp = Mlp(width, Net.SEEN)
        self.head = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mlp(self.attn(self.embed(x)))
        q = h.unsqueeze(1)
        return self.head(F.scaled_dot_product_attention(q, q, q).squeeze(1))


def batches():
    while True:
        yield torch.randn(2, 6, 3), torch.randn(2, 6, 2)


def mse(model: nn.Module, batch) -> torch.Tensor:
    return F.mse_loss(model(batch[0]), batch[1])


SPEC = Spec(model=Net, batches=batches, loss=mse, ref="sdpa-net")


def test_logits_are_recorded_in_a_submodule_and_at_the_root(tmp_path):
    frame = coordscope.load(coordscope.run(SPEC, widths=[4, 8], steps=2, seeds=1, out=tmp_path / "r",
                                           progress=False))
    logits = frame.filter(site="act", probe="rms", role="attn_logits")
    assert set(logits["name"]) == {"attn.attn_logits", "attn_logits"}
    assert logits.height == 2 * 2 * 3  # two calls, two widths, steps 0..2


def test_the_mode_is_active_inside_sdpa_callers_only(tmp_path):
    """The root calls SDPA too, so its scope is the whole forward; without that call only attn has it."""
    Net.SEEN.clear()
    coordscope.run(SPEC, widths=[4, 8], steps=1, seeds=1, out=tmp_path / "r", progress=False)
    assert ("attn", True) in Net.SEEN and ("mlp", True) in Net.SEEN  # inside the root's scope

    model = Net(8)
    layers = {"attn.attn_logits": Layer("attn_logits", "tap", (1,), (False,))}
    Net.SEEN.clear()
    with sdpa_scope(model, sdpa_callers(layers)):
        model(torch.randn(2, 6, 3))
    assert Net.SEEN == [("attn", True), ("mlp", False)]
    assert not mode_on()
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == 0


def test_a_caller_the_model_lacks_widens_the_scope_to_the_whole_forward():
    model = Net(8)
    Net.SEEN.clear()
    with sdpa_scope(model, {"blocks.7.attn"}):
        model(torch.randn(2, 6, 3))
    assert Net.SEEN == [("attn", True), ("mlp", True)]


def test_the_mode_is_left_when_a_scoped_forward_raises():
    model = Net(8)
    with pytest.raises(RuntimeError), sdpa_scope(model, {"attn"}):
        model.attn(torch.randn(2, 6, 5))  # wrong width: qkv raises inside the scoped module
    assert not mode_on()
    model.attn(torch.randn(2, 6, 8))  # and the model runs normally afterwards


@pytest.mark.parametrize(("name", "caller"), [("blocks.0.attn.attn_logits", "blocks.0.attn"),
                                               ("blocks.0.attn.attn_logits#2", "blocks.0.attn"),
                                               ("attn_logits", "")])
def test_callers_are_read_from_the_tap_names(name, caller):
    layers = {name: Layer("attn_logits", "tap", (1,), (False,)),
              "blocks.0.mlp.c_fc": Layer("hidden", "Linear", (1,), (True,))}
    assert sdpa_callers(layers) == {caller}
