"""The sample models themselves: each builds, trains a step, and has the learning rates its docstring's table
promises; the shapes people have (dict batches, ``.loss`` outputs, tied weights, buffers, frozen
parameters) are really there."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import coordscope
from coordscope.sample_models import SAMPLES, cnn, gpt, hf_style
from coordscope.spec import first_batch, load_spec, make_optimizer

WIDTHS = (64, 128)


def group_lrs(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    return {group["name"]: group["lr"] for group in optimizer.param_groups}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_builds_and_trains_a_step_at_two_widths(name: str) -> None:
    spec = load_spec(name)
    for width in WIDTHS:
        torch.manual_seed(0)
        model = spec.model(width)
        batch = first_batch(spec)
        optimizer = make_optimizer(spec, model, 1e-3, width)  # in train mode, as coordscope runs it
        loss = spec.compute_loss(model, batch)
        assert loss.dim() == 0 and torch.isfinite(loss), f"{name} at width {width}: loss {loss}"
        loss.backward()
        trained = [p for p in model.parameters() if p.requires_grad]
        assert all(p.grad is not None for p in trained), f"{name}: a trainable parameter got no gradient"
        before = [p.detach().clone() for p in trained]
        optimizer.step()
        assert any(not torch.equal(b, p) for b, p in zip(before, trained, strict=True))


def test_gpt_head_dimension_grows_and_mup_attention_is_sp_at_the_base_width() -> None:
    for width in (64, 128, 256):
        config = gpt.GPTConfig(width, "mup")
        d_head = width // gpt.N_HEAD
        assert math.isclose(config.attn_scale, math.sqrt(gpt.BASE_WIDTH // gpt.N_HEAD) / d_head)
        assert math.isclose(gpt.GPTConfig(width, "sp").attn_scale, d_head**-0.5)
        assert math.isclose(gpt.GPTConfig(width, "mup", frozenset({"attn_sqrt_d"})).attn_scale, d_head**-0.5)
    assert math.isclose(gpt.GPTConfig(gpt.BASE_WIDTH, "mup").attn_scale, gpt.GPTConfig(gpt.BASE_WIDTH, "sp").attn_scale)


def test_gpt_attention_matches_an_explicit_softmax() -> None:
    """The SDPA call with ``scale=`` computes softmax(q·kᵀ·scale) with a causal mask, as documented."""
    torch.manual_seed(0)
    model = gpt.build(128, "mup")
    attn = model.blocks[0].attn
    x = torch.randn(2, 8, 128)
    q, k, v = (z.view(2, 8, gpt.N_HEAD, -1).transpose(1, 2) for z in attn.c_attn(x).split(128, dim=2))
    logits = (q @ k.transpose(-2, -1)) * attn.scale
    logits = logits.masked_fill(~torch.ones(8, 8, dtype=torch.bool).tril(), float("-inf"))
    y = (F.softmax(logits, dim=-1) @ v).transpose(1, 2).reshape(2, 8, 128)
    torch.testing.assert_close(attn(x), attn.c_proj(y), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("bugs", "expected"), [
    ((), {"wte.weight": 1.0, "blocks.0.attn.c_attn.weight": 0.25, "blocks.1.mlp.c_proj.weight": 0.25,
          "blocks.0.ln_1.weight": 1.0, "lm_head.weight": 1.0, "lm_head.bias": 1.0}),
    (("plain_adam",), {"wte.weight": 1.0, "blocks.0.attn.c_attn.weight": 1.0, "lm_head.weight": 1.0}),
    (("embedding_lr_scaled",), {"wte.weight": 0.25, "wpe.weight": 0.25, "blocks.0.mlp.c_fc.weight": 0.25}),
])
def test_gpt_mup_learning_rates(bugs: tuple[str, ...], expected: dict[str, float]) -> None:
    model = gpt.build(256, "mup", bugs)  # m = 4
    lrs = group_lrs(gpt.make_optimizer(model, 1.0))
    for name, lr in expected.items():
        assert lrs[name] == pytest.approx(lr), name


def test_gpt_readout_multiplier_and_bugs() -> None:
    assert gpt.build(256, "mup").lm_head.output_mult == pytest.approx(0.25)
    assert gpt.build(256, "mup", ["output_mult_twice"]).lm_head.output_mult == pytest.approx(1 / 16)
    assert gpt.build(256, "mup", ["readout_unscaled"]).lm_head.output_mult == 1.0
    assert gpt.build(256, "sp").lm_head.output_mult == 1.0
    assert set(group_lrs(gpt.make_optimizer(gpt.build(256, "sp"), 1.0)).values()) == {1.0}
    assert gpt.build(256, "sp", ["constant_std"]).blocks[0].mlp.c_fc.weight.std().item() == pytest.approx(
        gpt.GPT2_STD, rel=0.05)
    with pytest.raises(ValueError, match="unknown bugs"):
        gpt.build(64, "mup", ["no_such_bug"])


def test_cnn_learning_rates() -> None:
    model = cnn.build(256, "mup")
    lrs = group_lrs(cnn.MUP.make_optimizer(model, 1.0))
    assert lrs["convs.0.weight"] == pytest.approx(0.25) and lrs["convs.1.weight"] == pytest.approx(0.25)
    assert lrs["stem.weight"] == lrs["convs.0.bias"] == lrs["readout.weight"] == 1.0
    assert set(group_lrs(cnn.BUG_PLAIN_ADAM.make_optimizer(model, 1.0)).values()) == {1.0}
    assert model.readout.output_mult == pytest.approx(0.25)


def test_hf_style_model_has_the_shapes_people_have() -> None:
    torch.manual_seed(0)
    model = hf_style.build(128)
    batch = next(hf_style.batches())
    assert set(batch) == {"input_ids", "labels"}
    out = model(**batch)
    assert out.loss is not None and out.loss.dim() == 0 and out.logits.shape == (*batch["input_ids"].shape, gpt.VOCAB)
    assert model.lm_head.weight is model.wte.weight
    assert "positions" in dict(model.named_buffers())
    assert not model.pos.requires_grad
    lrs = group_lrs(hf_style.make_optimizer(model, 1.0))
    assert "pos" not in lrs and "lm_head.weight" not in lrs  # frozen; tied (trained once, as wte)
    assert lrs["wte.weight"] == 1.0 and lrs["blocks.0.attn.c_attn.weight"] == pytest.approx(0.5)


def test_hf_style_model_is_recorded_as_it_is(tmp_path) -> None:
    """No loss() in the spec: coordscope uses ``.loss``, records ``.logits`` as ``<output>``, leaves the
    frozen parameter untrained and records the tied readout under its own module name."""
    import polars as pl

    run_dir = coordscope.run("hf-tied-mup", widths=[64, 128], steps=1, seeds=1, out=tmp_path / "run", progress=False)
    rows = coordscope.load(run_dir)
    names = set(rows.get_column("name"))
    assert {"<output>", "<loss>", "lm_head", "wte", "pos", "blocks.0.attn.attn_logits"} <= names
    pos_sites = set(rows.filter(pl.col("name") == "pos").get_column("site"))
    assert pos_sites == {"param"}  # recorded, never trained
    logits = rows.filter((pl.col("name") == "<output>") & (pl.col("site") == "act") & (pl.col("step") == 0))
    head = rows.filter((pl.col("name") == "lm_head") & (pl.col("site") == "act") & (pl.col("step") == 0))
    assert logits.get_column("value").to_list() == head.get_column("value").to_list()


def test_sample_sweeps_default_to_the_demos_grid() -> None:
    """`coordscope sweep gpt-*-sweep` without flags runs what `coordscope demo` runs (measured to fit its
    two minutes with firm verdicts), so the demo's pictures can be reproduced sweep by sweep."""
    import importlib

    from coordscope.config import Config
    from coordscope.settings import resolve_sweep

    demo = importlib.import_module("coordscope.cli.demo")  # the module (coordscope.cli.demo is the command)
    for name, seeds in demo.SWEEPS.items():
        settings = resolve_sweep(name, config=Config())  # no [tool.coordscope.sweep] in the way
        assert list(settings.widths) == demo.SWEEP_WIDTHS and settings.steps == demo.SWEEP_STEPS
        assert settings.lrs == pytest.approx(demo.SWEEP_LRS) and len(settings.seeds) == seeds
        assert settings.executor == demo.EXECUTOR
