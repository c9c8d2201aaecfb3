"""Fits, verdicts and diagnoses on synthetic stores whose exponents are known, written through the real
ShardWriter and read back from real Parquet by the same code path as ``coordscope check``."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from coordscope.analysis import analyse, relative_updates
from coordscope.checking import check_run
from coordscope.config import Override
from coordscope.diagnose import ADAM_LIKE, ORTHOGONALISED, SGD_LIKE
from coordscope.runmeta import SCHEMA_VERSION, RunMeta, read_meta, update_meta, write_meta
from coordscope.store import ShardWriter, scan, shard_name

WIDTHS = (64, 128, 256, 512)
T_975_DOF10 = 2.228  # Student t, 97.5 % quantile, 10 degrees of freedom (4 widths × 3 seeds − 2)


@dataclass(frozen=True)
class Curve:
    """A recorded quantity whose size is base · (width/64)^slope(step) · 2^(noise · N(0, 1))."""

    name: str
    site: str
    role: str
    slope: float | Callable[[int], float] = 0.0
    base: float = 1.0

    def exponent(self, step: int) -> float:
        return self.slope(step) if callable(self.slope) else self.slope


Patch = Callable[[str, str, int, int, int, float], float]


def write_run(root: Path, curves: Sequence[Curve], *, widths: Sequence[int] = WIDTHS, seeds: Sequence[int] = (0, 1, 2),
              steps: int = 3, noise: float = 0.0, seed: int = 0, optimizer: str = "Adam",
              patch: Patch | None = None) -> Path:
    """A complete run directory with steps 0..steps; act_delta is exactly 0 at step 0."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for width in widths:
        for s in seeds:
            with ShardWriter(root, "synthetic", width, s) as shard:
                for step in range(steps + 1):
                    values = []
                    for c in curves:
                        value = c.base * (width / 64) ** c.exponent(step) * 2 ** (noise * rng.standard_normal())
                        if c.site == "act_delta" and step == 0:
                            value = 0.0
                        values.append(patch(c.name, c.site, width, s, step, value) if patch else value)
                    shard.write(step, [c.name for c in curves], [c.site for c in curves], ["rms"] * len(curves),
                                values, [c.role for c in curves], ["Linear"] * len(curves))
                shard.commit()
    write_meta(root, RunMeta.from_json({
        "schema_version": SCHEMA_VERSION, "kind": "coordcheck", "run": root.name, "spec": "synthetic",
        "widths": list(widths), "seeds": list(seeds), "steps": steps, "lr": 0.01, "optimizer": optimizer,
        "probes": ["rms"], "status": "complete",
        "jobs": [{"width": w, "seed": s, "shard": shard_name(w, s)} for w in widths for s in seeds],
        "layers": {c.name: {"role": c.role, "module": "Linear", "shape": [], "scaling_dims": []} for c in curves},
    }))
    return root


def mup_model(**slopes: float) -> list[Curve]:
    """A small model's act and act_delta curves, flat unless ``slopes`` says otherwise (keys
    ``<name>__<site>``), plus the t = 0 output logits shrinking like width^-0.5 as μP has them."""
    roles = {"input": "input", "hidden.0": "hidden", "hidden.1": "hidden", "readout": "output", "<output>": "output"}
    curves = []
    for name, role in roles.items():
        for site in ("act", "act_delta"):
            default: float | Callable[[int], float] = 0.0
            if role == "output" and site == "act":
                default = lambda step: -0.5 if step == 0 else 0.0  # noqa: E731
            curves.append(Curve(name, site, role, slopes.get(f"{name}__{site}".replace("<output>", "output"), default)))
    return curves


# ---------------------------------------------------------------- fits


def test_slope_and_stderr_match_known_exponents_over_many_draws(tmp_path):
    """400 independent fits with known slopes and log-normal noise: slopes are unbiased, the standard
    error matches the sampling spread, and slope ± t·stderr covers the truth 95 % of the time."""
    rng = np.random.default_rng(1)
    truth = {f"layer{i}": float(b) for i, b in enumerate(rng.uniform(-1.5, 1.5, 400))}
    curves = [Curve(name, "act_grad", "hidden", b, base=float(rng.uniform(0.01, 100))) for name, b in truth.items()]
    run = write_run(tmp_path / "run", curves, steps=0, noise=0.3, seed=2)
    fits = analyse(scan(run)).fits.filter(pl.col("site") == "act_grad")
    assert fits.height == 400
    error = fits["slope"].to_numpy() - np.array([truth[n] for n in fits["name"]])
    stderr = fits["stderr"].to_numpy()
    x = np.log2(np.repeat(WIDTHS, 3))
    ideal_se = 0.3 / math.sqrt(((x - x.mean()) ** 2).sum())  # noise is 0.3 in log2 units
    assert abs(error.mean()) < 4 * ideal_se / math.sqrt(400)
    assert 0.85 < error.std() / ideal_se < 1.15
    assert 0.9 < np.sqrt((stderr ** 2).mean()) / ideal_se < 1.1
    coverage = (np.abs(error) <= T_975_DOF10 * stderr).mean()
    assert 0.92 <= coverage <= 0.98, coverage
    assert (fits["n"] == 12).all() and (fits["n_widths"] == 2).all()


def test_fit_agrees_with_numpy_least_squares(tmp_path):
    curves = [Curve("a", "act", "hidden", 0.7, base=3.0), Curve("b", "act", "hidden", -0.3, base=1e-4)]
    run = write_run(tmp_path / "run", curves, steps=1, noise=0.5, seed=3)
    rows = scan(run).collect()
    fits = analyse(scan(run), widths=WIDTHS).fits
    for (name, step), group in rows.group_by(["name", "step"]):
        x, y = np.log2(group["width"].to_numpy()), np.log2(group["value"].to_numpy())
        slope, intercept = np.polyfit(x - np.log2(WIDTHS).mean(), y, 1)
        r2 = 1 - ((y - (slope * (x - np.log2(WIDTHS).mean()) + intercept)) ** 2).sum() / ((y - y.mean()) ** 2).sum()
        row = fits.filter((pl.col("name") == name) & (pl.col("step") == step)).row(0, named=True)
        assert row["slope"] == pytest.approx(slope, abs=1e-9)
        assert row["intercept"] == pytest.approx(intercept, abs=1e-9)
        assert row["r2"] == pytest.approx(r2, abs=1e-9)


def test_zeros_are_skipped_and_act_delta_at_init_has_no_fit(tmp_path):
    def one_zero(name: str, site: str, width: int, seed: int, step: int, value: float) -> float:
        return 0.0 if (site == "act" and width == 128 and seed == 1 and step == 2) else value

    run = write_run(tmp_path / "run", [Curve("h", "act", "hidden", 0.5), Curve("h", "act_delta", "hidden", 0.0)],
                    patch=one_zero)
    fits = analyse(scan(run)).fits
    assert fits.filter((pl.col("site") == "act_delta") & (pl.col("step") == 0)).is_empty()
    row = fits.filter((pl.col("site") == "act") & (pl.col("step") == 2)).row(0, named=True)
    assert (row["n"], row["n_skipped"]) == (11, 1)
    assert row["slope"] == pytest.approx(0.5, abs=1e-9) and row["verdict"] == "exploding"


def test_non_finite_values_make_the_layer_diverged_at_its_first_width_and_step(tmp_path):
    def blow_up(name: str, site: str, width: int, seed: int, step: int, value: float) -> float:
        if name == "hidden.1" and site == "act" and ((step == 2 and width >= 256) or step == 3):
            return math.nan if width == 256 else math.inf
        return value

    run = write_run(tmp_path / "run", mup_model(), patch=blow_up)
    report = check_run(run)
    assert not report.ok
    (finding,) = [f for f in report.findings if f.verdict == "diverged"]
    assert (finding.name, finding.site, finding.first_step, finding.first_width) == ("hidden.1", "act", 2, 256)
    assert finding.severity == "error" and finding.rule == "diverged"
    assert "width 256, step 2" in finding.hint
    nonfinite = report.fits.filter(pl.col("n_nonfinite") > 0)
    assert sorted(nonfinite["step"].to_list()) == [2, 3]  # recorded and flagged, never dropped


# ---------------------------------------------------------------- verdicts


def test_a_run_whose_only_deviation_is_t0_logits_shrinking_like_sqrt_width_passes(tmp_path):
    report = check_run(write_run(tmp_path / "run", mup_model(), noise=0.05))
    t0 = report.fits.filter((pl.col("name") == "<output>") & (pl.col("site") == "act") & (pl.col("step") == 0))
    assert t0["slope"][0] == pytest.approx(-0.5, abs=0.1) and t0["judged"][0]
    assert report.ok and report.findings == [] and report.regime == "μP-like"


def test_output_shrinking_beyond_sqrt_width_fails(tmp_path):
    report = check_run(write_run(tmp_path / "run", mup_model(output__act=-1.0, readout__act=-1.0)))
    assert not report.ok
    assert {f.name for f in report.errors} == {"<output>", "readout"}
    assert {f.rule for f in report.errors} == {"output_mult_twice"}


@pytest.mark.parametrize(("slope", "noise", "ok"), [(0.2, 0.02, True), (0.4, 0.02, False), (0.4, 1.0, True)])
def test_tolerance_is_the_larger_of_absolute_and_sigma_stderr(tmp_path, slope, noise, ok):
    """A small deviation passes; a clear one fails; the same deviation in a fit too noisy to tell passes."""
    run = write_run(tmp_path / "run", mup_model(**{"hidden.0__act_delta": slope}), noise=noise, steps=1, seed=5)
    layers = check_run(run).layers
    row = layers.filter((pl.col("name") == "hidden.0") & (pl.col("site") == "act_delta")).row(0, named=True)
    assert (row["severity"] == "ok") is ok
    assert row["tolerance"] == pytest.approx(max(0.25, 3 * row["stderr"]))


def test_sites_other_than_activations_are_shown_but_not_judged(tmp_path):
    curves = [*mup_model(), Curve("hidden.0.weight", "param_update", "hidden", -1.0)]
    report = check_run(write_run(tmp_path / "run", curves))
    rows = report.fits.filter(pl.col("site") == "param_update")
    assert rows.height == 4 and not rows["judged"].any() and rows["verdict"].is_null().all()
    assert report.ok


def test_overrides_change_expectation_tolerance_and_can_ignore(tmp_path):
    run = write_run(tmp_path / "run", [*mup_model(**{"hidden.0__act_delta": 0.6}),
                                       Curve("hidden.0.weight", "param_update", "hidden", -1.0)])
    assert not check_run(run).ok
    assert check_run(run, overrides=[Override("hidden.0", "act_delta", expected=(0.5, 0.7))]).ok
    assert check_run(run, overrides=[Override("hidden.?", "act_delta", tolerance=0.7)]).ok
    ignored = check_run(run, overrides=[Override("hidden.0", "*", ignore=True)])
    assert ignored.ok and not ignored.fits.filter(pl.col("name") == "hidden.0")["judged"].any()
    judged_update = check_run(run, overrides=[Override("*.weight", "param_update", expected=(0.0, 0.0))])
    assert [(f.name, f.verdict) for f in judged_update.errors][-1] == ("hidden.0.weight", "vanishing")
    later_wins = check_run(run, overrides=[Override("hidden.0", "act_delta", expected=(0.6, 0.6)),
                                           Override("hidden.0", "act_delta", expected=(0.0, 0.0))])
    assert not later_wins.ok


# ---------------------------------------------------------------- diagnosis


# How the optimizer moved the hidden weights at the first step, as a coord check records it: a normalised
# (Adam-like) update keeps its size while the gradient shrinks with width; SGD's update is lr × gradient.
NORMALISED = [Curve(f"hidden.{i}.weight", site, "hidden", slope) for i in (0, 1)
              for site, slope in (("param_update", 0.0), ("param_grad", -1.0))]
FOLLOWS_GRAD = [Curve(f"hidden.{i}.weight", site, "hidden", -0.5) for i in (0, 1)
                for site in ("param_update", "param_grad")]


@pytest.mark.parametrize(("slopes", "updates", "rule", "layers", "regime"), [
    ({"readout__act_delta": 1.0, "output__act_delta": 1.0}, NORMALISED, "readout_unscaled", {"readout", "<output>"},
     "SP-like (exploding)"),
    ({"hidden.0__act_delta": 0.8, "hidden.1__act_delta": 0.8}, NORMALISED, "plain_adam", {"hidden.0", "hidden.1"},
     "SP-like (exploding)"),
    ({"hidden.0__act_delta": 0.8}, FOLLOWS_GRAD, "hidden_lr_unscaled", {"hidden.0"}, "SP-like (exploding)"),
    ({"hidden.0__act_delta": 0.8}, [], "hidden_lr_unscaled", {"hidden.0"}, "SP-like (exploding)"),
    ({"hidden.0__act_delta": -0.5, "hidden.1__act_delta": -0.5, "input__act_delta": -0.5}, FOLLOWS_GRAD, "ntk_lazy",
     {"hidden.0", "hidden.1", "input"}, "NTK-like (lazy)"),
    ({"input__act_delta": -0.5}, NORMALISED, "embedding_lr_scaled", {"input"}, "mixed"),
    ({"hidden.0__act": 1.0, "hidden.1__act": 1.0}, NORMALISED, "sp_init_constant_std", {"hidden.0", "hidden.1"},
     "SP-like (exploding)"),
    ({"output__act_delta": -1.0, "readout__act_delta": -1.0}, NORMALISED, "output_mult_twice", {"readout", "<output>"},
     "mixed"),
])
def test_rules_name_the_bug_the_slopes_show(tmp_path, slopes, updates, rule, layers, regime):
    report = check_run(write_run(tmp_path / "run", mup_model(**slopes) + updates, noise=0.05))
    assert not report.ok
    (diagnosis,) = report.diagnoses
    assert diagnosis.rule == rule and set(diagnosis.layers) == layers
    assert all(f.rule == rule and f.hint == diagnosis.hint for f in report.findings)
    assert report.regime == regime


@pytest.mark.parametrize("optimizer", ["Adam", "SGD", "Muon", "MuAdamScheduleFree", "MyOptimizer"])
def test_the_optimizers_name_never_picks_the_hint(tmp_path, optimizer):
    """Only what the updates did decides: an SGD-like update gets the SGD hint whatever the class is called."""
    curves = mup_model(**{"hidden.0__act_delta": 0.8})
    sgd_like = check_run(write_run(tmp_path / "a", curves + FOLLOWS_GRAD, optimizer=optimizer, noise=0.05))
    adam_like = check_run(write_run(tmp_path / "b", curves + NORMALISED, optimizer=optimizer, noise=0.05))
    assert [d.rule for d in sgd_like.diagnoses] == ["hidden_lr_unscaled"]
    assert [d.rule for d in adam_like.diagnoses] == ["plain_adam"]


def test_attention_logits_growing_after_training_are_attn_sqrt_d(tmp_path):
    curves = [*mup_model(), Curve("blocks.0.attn.attn_logits", "act", "attn_logits", lambda s: 0.0 if s == 0 else 0.5),
              Curve("blocks.0.attn.attn_logits", "act_delta", "attn_logits", 0.5)]
    report = check_run(write_run(tmp_path / "run", curves))
    assert [d.rule for d in report.diagnoses] == ["attn_sqrt_d"]
    assert {f.name for f in report.errors} == {"blocks.0.attn.attn_logits"}
    assert "1/d_head" in report.findings[0].hint


def test_attention_already_scaled_by_one_over_d_does_not_get_the_sqrt_d_hint(tmp_path):
    """At t = 0 the logits shrink like d_head^-0.5, as 1/d gives: their later growth has another cause."""
    curves = [*mup_model(), Curve("blocks.0.attn.attn_logits", "act", "attn_logits", lambda s: -0.5 if s == 0 else 0.5),
              Curve("blocks.0.attn.attn_logits", "act_delta", "attn_logits", 0.5)]
    report = check_run(write_run(tmp_path / "run", curves))
    assert not report.ok and "attn_sqrt_d" not in [d.rule for d in report.diagnoses]


def test_attention_logits_not_shrinking_at_init_are_attn_sqrt_d_unless_heads_grow(tmp_path):
    """Under 1/d the init logits are d_head random products over d_head: slope -0.5; 1/√d gives 0."""
    curves = [*mup_model(), Curve("blocks.0.attn.attn_logits", "act", "attn_logits", 0.0)]
    run = write_run(tmp_path / "run", curves)
    report = check_run(run)
    assert [(f.name, f.step, f.rule) for f in report.errors] == [("blocks.0.attn.attn_logits", 0, "attn_sqrt_d")]
    meta = read_meta(run)
    heads_grow = replace(meta.layers["blocks.0.attn.attn_logits"], scaling_dims=(False, True, False, False))
    write_meta(run, replace(meta, layers={**meta.layers, "blocks.0.attn.attn_logits": heads_grow}))
    assert check_run(run).ok


def test_attention_logits_decaying_early_like_sqrt_d_are_expected(tmp_path):
    curves = [*mup_model(), Curve("blocks.0.attn.attn_logits", "act", "attn_logits", -0.5),
              Curve("blocks.0.attn.attn_logits", "act_delta", "attn_logits", -0.4)]
    assert check_run(write_run(tmp_path / "run", curves)).ok


def test_hidden_growth_at_init_only_is_a_warning_not_a_failure(tmp_path):
    run = write_run(tmp_path / "run", mup_model(**{"hidden.0__act": lambda s: 1.0 if s == 0 else 0.0}))
    report = check_run(run)
    assert report.ok
    (finding,) = report.findings
    assert (finding.severity, finding.step, finding.judged, finding.rule) == ("warning", 0, False,
                                                                               "sp_init_constant_std")


def test_many_layers_get_one_fit_per_layer_site_and_step(tmp_path):
    """A wide store is judged whole (its speed is benchmarks/analysis_speed.py's job: no timing here)."""
    curves = [Curve(f"l{i}", site, "hidden", 0.0) for i in range(200) for site in ("act", "act_delta", "act_grad")]
    run = write_run(tmp_path / "run", curves, steps=13, seeds=(0, 1))  # 600 × 14 × 8 = 67,200 rows
    report = check_run(run)
    assert report.fits.height == 600 * 14 - 200  # act_delta at t = 0 is zero by definition: no fit
    assert report.ok


def test_an_embedding_lr_scaled_down_is_named_even_when_hidden_features_also_vanish(tmp_path):
    """u-μP style: the embedding's learning rate ∝ width^-½ (read from the optimizer's groups) explains the
    input layer's vanishing change; without that evidence the same slopes read as NTK-lazy."""
    slopes = {"input__act_delta": -0.5, "hidden.0__act_delta": -0.5, "hidden.1__act_delta": -0.5}
    run = write_run(tmp_path / "run", mup_model(**slopes) + FOLLOWS_GRAD, noise=0.05)
    lazy = check_run(run)
    assert next(f.rule for f in lazy.findings if f.name == "input") == "ntk_lazy"
    rates = {str(w): {"input.weight": {"lr": 0.01 * (w / 64) ** -0.5}} for w in WIDTHS}
    update_meta(run, hyperparameters=rates)
    scaled = check_run(run)
    assert next(f.rule for f in scaled.findings if f.name == "input") == "embedding_lr_scaled"


# ---------------------------------------------------------------- updates relative to weights


def with_relative(run: Path, spectral: bool = False) -> pl.LazyFrame:
    """The run's rows (also as ``spectral`` rows when asked) and the updates relative to the weights, as
    ``coordscope check`` assembles them."""
    rows = scan(run)
    if spectral:
        rows = pl.concat([rows, rows.filter(pl.col("site").is_in(["param", "param_update"]))
                         .with_columns(probe=pl.lit("spectral"))])
    return pl.concat([rows, relative_updates(rows)])


def weights(slopes: dict[str, tuple[float, float]]) -> list[Curve]:
    """``param`` and ``param_update`` curves: name → (slope of W, slope of ΔW)."""
    roles = {"input.weight": "input", "hidden.0.weight": "hidden", "readout.weight": "output"}
    return [c for name, (w, dw) in slopes.items()
            for c in (Curve(name, "param", roles[name], w, 0.1), Curve(name, "param_update", roles[name], dw, 1e-3))]


TABLE_3 = {"input.weight": (0.0, 0.0), "hidden.0.weight": (-0.5, -1.0), "readout.weight": (-1.0, -1.0)}
"""μP with Adam as TP5 Table 3 has it: init var 1/fan_in (1/fan_in² for the readout), lr 1, 1/n, 1/n."""
U_MU_P = {"input.weight": (0.0, 0.0), "hidden.0.weight": (0.0, -0.5), "readout.weight": (0.0, 0.0)}
"""The same model with unit-scale weights and the width factors moved into forward multipliers (u-μP)."""
PLAIN_ADAM = {**TABLE_3, "hidden.0.weight": (-0.5, 0.0)}


def rel_verdicts(analysis: Any, probe: str = "rel_rms") -> dict[str, str | None]:
    rows = analysis.fits.filter((pl.col("probe") == probe) & (pl.col("step") == 1))
    return dict(zip(rows["name"].to_list(), rows["verdict"].to_list(), strict=True))


SHOWN = {"input.weight": None, "readout.weight": None}
"""Input and output matrices' ratios are shown, not judged: μP leaves them free (a readout may start below
1/width or at zero; u-μP scales the embedding's learning rate like width^-½ on purpose)."""


@pytest.mark.parametrize(("model", "family", "verdicts"), [
    (TABLE_3, ADAM_LIKE, {**SHOWN, "hidden.0.weight": "flat"}),
    (U_MU_P, ADAM_LIKE, {**SHOWN, "hidden.0.weight": "flat"}),
    (TABLE_3, SGD_LIKE, {**SHOWN, "hidden.0.weight": "flat"}),
    (PLAIN_ADAM, ADAM_LIKE, {**SHOWN, "hidden.0.weight": "exploding"}),
    # a readout initialised smaller than Table 3's 1/width (its ratio grows like √width): still μP
    ({**TABLE_3, "readout.weight": (-1.5, -1.0)}, ADAM_LIKE, {**SHOWN, "hidden.0.weight": "flat"}),
    # Orthogonalised updates (Muon): entry sizes depend on the update's rank against the width; no family
    # measured: nothing to go by. Neither is judged (verdict None), neither passes.
    (PLAIN_ADAM, ORTHOGONALISED, {**SHOWN, "hidden.0.weight": None}),
    (PLAIN_ADAM, None, {**SHOWN, "hidden.0.weight": None}),
])
def test_entrywise_updates_relative_to_weights_are_judged_by_the_measured_family(tmp_path, model, family, verdicts):
    """rms(ΔW)/rms(W): width^-½ for hidden matrices under Adam-like and SGD-like updates (TP5 Table 3),
    whichever way the width factors are shared between init, multiplier
    and learning rate (Table 3 and u-μP give the same ratios from different raw slopes)."""
    run = write_run(tmp_path / "run", [*mup_model(), *weights(model)])
    analysis = analyse(with_relative(run), family=family)
    assert rel_verdicts(analysis) == verdicts
    assert analysis.family == family
    raw = analysis.fits.filter(pl.col("site").is_in(["param", "param_update"]) & (pl.col("probe") == "rms"))
    assert not raw["judged"].any()  # the raw sizes are a convention: shown, not judged


def test_spectral_updates_relative_to_weights_are_judged_for_hidden_matrices_whatever_the_family(tmp_path):
    """‖ΔW‖₂/‖W‖₂ (the spectral condition) of hidden matrices is flat for every optimizer; input and output
    matrices are shown only (a fixed vocabulary or input size is not small against the width)."""
    run = write_run(tmp_path / "run", [*mup_model(), *weights({**PLAIN_ADAM, "readout.weight": (-1.0, 0.0)})])
    for family in (ADAM_LIKE, SGD_LIKE, ORTHOGONALISED, None):
        verdicts = rel_verdicts(analyse(with_relative(run, spectral=True), family=family), "rel_spectral")
        assert verdicts == {"input.weight": None, "hidden.0.weight": "exploding", "readout.weight": None}, family


def test_a_weight_that_is_exactly_zero_at_init_has_no_relative_update(tmp_path):
    """A zero-initialised matrix (a readout as in mup's examples, a residual projection some GPT recipes
    zero): W_0 = 0 has no ratio, and its later W_t is made of its own updates, so no step gets a row — not a
    division by zero, and not a false verdict on a hidden matrix that starts at zero."""
    def zero_init(name: str, site: str, width: int, seed: int, step: int, value: float) -> float:
        return 0.0 if (name in ("readout.weight", "hidden.0.weight") and site == "param" and step == 0) else value

    run = write_run(tmp_path / "run", [*mup_model(), *weights(PLAIN_ADAM)], patch=zero_init)
    rel = relative_updates(scan(run)).collect()
    assert set(rel["name"].unique()) == {"input.weight"}
    assert rel["value"].is_finite().all()
    assert analyse(with_relative(run), family=ADAM_LIKE).findings == []


def test_the_gradient_reaching_the_output_is_judged_flat_and_inner_gradients_are_shown(tmp_path):
    curves = [*mup_model(), Curve("<output>", "act_grad", "output", 0.6), Curve("hidden.0", "act_grad", "hidden", -1.0)]
    report = check_run(write_run(tmp_path / "run", curves))
    assert {(f.name, f.site, f.verdict, f.rule) for f in report.errors} == {
        ("<output>", "act_grad", "exploding", "output_grad")}
    inner = report.fits.filter((pl.col("name") == "hidden.0") & (pl.col("site") == "act_grad"))
    assert not inner["judged"].any()


def test_check_measures_the_family_and_judges_the_hidden_update_by_it(tmp_path):
    """End to end: the optimizer's groups (hidden lr ∝ 1/width) and the updates make the family Adam-like,
    and a hidden update that does not shrink against its weight fails, named by the plain-Adam rule."""
    def run_with(model: dict[str, tuple[float, float]], name: str) -> Any:
        grads = [Curve("hidden.0.weight", "param_grad", "hidden", -1.0)]
        run = write_run(tmp_path / name, [*mup_model(), *weights(model), *grads])
        hidden_lr = -1.0 if model is TABLE_3 else 0.0
        update_meta(run, hyperparameters={str(w): {"hidden.0.weight": {"lr": 0.01 * (w / 64) ** hidden_lr}}
                                          for w in WIDTHS})
        return check_run(run)

    good, bad = run_with(TABLE_3, "good"), run_with(PLAIN_ADAM, "bad")
    assert good.optimizer_family == bad.optimizer_family == ADAM_LIKE
    assert good.ok
    assert [(f.name, f.probe, f.verdict, f.rule) for f in bad.errors] == [
        ("hidden.0.weight", "rel_rms", "exploding", "plain_adam")]
