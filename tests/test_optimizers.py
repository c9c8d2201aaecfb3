"""The optimizers of the samples (sample_models/optimizers.py) and what coordscope measures of them: Lion,
a sign-type optimizer torch does not ship, is implemented correctly, measured Adam-like from its updates
(not its name), and judged by μP's Adam rule — hidden lr ∝ 1/width passes, one lr for all fails with the
learning-rate hint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import coordscope
from coordscope.diagnose import ADAM_LIKE
from coordscope.sample_models.optimizers import Lion

GRID = {"widths": [64, 128, 256], "steps": 2, "seeds": 1, "progress": False}


def test_lion_moves_every_entry_by_plus_or_minus_lr_in_the_direction_of_the_interpolated_momentum() -> None:
    """Chen et al. 2023, Algorithm 2: update = sign(β₁·m + (1 − β₁)·g), then m ← β₂·m + (1 − β₂)·g."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(8, 5))
    lr, (beta1, beta2) = 0.01, (0.9, 0.99)
    optimizer = Lion([w], lr=lr, betas=(beta1, beta2))
    momentum = torch.zeros_like(w)
    for _ in range(3):
        grad = torch.randn_like(w)
        w.grad = grad.clone()
        before = w.detach().clone()
        optimizer.step()
        step = w.detach() - before
        assert torch.allclose(step.abs(), torch.full_like(step, lr))  # every entry ±lr: sign-type
        assert torch.equal(torch.sign(-step), torch.sign(beta1 * momentum + (1 - beta1) * grad))
        momentum = beta2 * momentum + (1 - beta2) * grad
        assert torch.allclose(optimizer.state[w]["momentum"], momentum)


def test_lion_weight_decay_is_decoupled_and_scaled_by_lr() -> None:
    w = torch.nn.Parameter(torch.full((2, 2), 2.0))
    w.grad = torch.ones_like(w)
    Lion([w], lr=0.1, weight_decay=0.5).step()
    assert torch.allclose(w.detach(), torch.full((2, 2), 2.0 * (1 - 0.1 * 0.5) - 0.1))


@pytest.mark.parametrize(("sample", "ok"), [("mlp-lion", True), ("mlp-lion-one-lr", False)])
def test_lion_is_measured_adam_like_and_judged_by_the_adam_rule(tmp_path: Path, sample: str, ok: bool) -> None:
    report = coordscope.check(sample, out=tmp_path / sample, **GRID)
    assert report.optimizer_family == ADAM_LIKE  # from the updates: Lion's class name says nothing
    assert report.ok is ok
    relative = report.fits.filter((report.fits["probe"] == "rel_rms") & (report.fits["role"] == "hidden")
                                  & (report.fits["step"] == 1))
    assert relative["judged"].all()
    if ok:
        assert report.findings == []
        assert relative["slope"].is_between(-0.75, -0.25).all()  # hidden entries move like 1/width vs 1/√width
        return
    hidden = [f for f in report.errors if f.role == "hidden"]
    assert {f.name for f in hidden} >= {"hidden.0", "hidden.1", "hidden.0.weight", "hidden.1.weight"}
    assert all(f.rule == "plain_adam" and "learning rate" in f.hint for f in hidden)
    assert relative["slope"].is_between(0.25, 0.75).all()  # one lr: entries move like 1 vs 1/√width
