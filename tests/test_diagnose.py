"""From findings to causes (:mod:`coordscope.diagnose`): each rule on the pattern it claims and on its near misses,
rule order, the diagnoses a set of findings gives, the regime label, the generic hint, and the measurements the
rules lean on (slopes at initialisation, the optimizer family). Then end to end on recorded runs.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import replace
from typing import Any

import polars as pl
import pytest
import torch
from torch import nn

import coordscope
from coordscope.analysis import Finding
from coordscope.checking import check_run
from coordscope.diagnose import (
    ADAM_LIKE,
    MIXED,
    MU_P,
    NTK,
    ORTHOGONALISED,
    RULE_IDS,
    RULES,
    SGD_LIKE,
    SP,
    UNDETERMINED,
    Context,
    Diagnosis,
    diagnose,
    first_updates,
    generic_hint,
    gradient_levels,
    init_slopes,
    optimizer_family,
    regime,
)
from coordscope.spec import Spec

FIT_SCHEMA = {"name": pl.String, "site": pl.String, "probe": pl.String, "step": pl.Int64, "role": pl.String,
              "slope": pl.Float64, "intercept": pl.Float64}


def fits(*rows: dict[str, Any]) -> pl.DataFrame:
    """A fits table with the columns the rules read; unspecified cells: probe rms, intercept 0."""
    return pl.DataFrame([{"probe": "rms", "intercept": 0.0, **r} for r in rows], schema=FIT_SCHEMA)


NO_FITS = fits()


def finding(name: str = "hidden.0", site: str = "act_delta", verdict: str = "exploding", *, role: str = "hidden",
            slope: float | None = 0.8, severity: str = "error", **extra: Any) -> Finding:
    return Finding(name=name, site=site, probe="rms", step=3, slope=slope, stderr=0.05, expected=0.0,
                   verdict=verdict, severity=severity, role=role, **extra)


def rule_of(f: Finding, fit_table: pl.DataFrame = NO_FITS, family: str | None = None,
            lr_slopes: dict[str, float] | None = None, others: tuple[Finding, ...] = ()) -> str | None:
    out, _ = diagnose([f, *others], fit_table, family, lr_slopes)
    return out[0].rule


def init(name: str, slope: float, role: str = "hidden") -> dict[str, Any]:
    return {"name": name, "site": "act", "step": 0, "role": role, "slope": slope}


# --- the rule table ----------------------------------------------------------------------------------------


def test_rule_ids_are_stable_unique_and_in_claim_order():
    assert RULE_IDS == ("loss_blowup", "diverged", "undetermined", "sp_init_constant_std", "attn_sqrt_d",
                        "readout_unscaled", "output_mult_twice", "plain_adam", "hidden_lr_unscaled", "ntk_lazy",
                        "embedding_lr_scaled", "output_grad")
    assert len(set(RULE_IDS)) == len(RULES)
    assert all(rule.title and rule.hint for rule in RULES)


CASES = [
    # (finding, fits rows, family, lr slopes, other findings) → rule
    pytest.param(finding("<loss>", "loss", "diverged", role="loss", slope=None), [], None, None, (), "loss_blowup",
                 id="loss-diverged"),
    pytest.param(finding("hidden.0", "act", "diverged", slope=None), [], None, None, (), "diverged",
                 id="layer-diverged"),
    pytest.param(finding("readout", "act", "diverged", role="output", slope=None), [], None, None, (), "diverged",
                 id="diverged-beats-readout"),
    pytest.param(finding(verdict="undetermined", slope=None), [], None, None, (), "undetermined",
                 id="undetermined-error"),
    pytest.param(finding(verdict="undetermined", slope=None, severity="warning"), [], None, None, (), None,
                 id="undetermined-warning-is-generic"),
    pytest.param(finding(site="act"), [init("hidden.0", 0.5)], ADAM_LIKE, None, (), "sp_init_constant_std",
                 id="init-grows"),
    pytest.param(finding(), [init("hidden.0", 0.35)], SGD_LIKE, None, (), "sp_init_constant_std",
                 id="init-grows-at-threshold"),
    pytest.param(finding(), [init("hidden.0", 0.34)], ADAM_LIKE, None, (), "plain_adam",
                 id="init-just-below-threshold"),
    pytest.param(finding(), [init("hidden.1", 0.9)], ADAM_LIKE, None, (), "plain_adam",
                 id="init-growth-of-another-layer"),
    pytest.param(finding("blocks.0.attn_logits", "act", role="attn_logits"), [], None, None, (), "attn_sqrt_d",
                 id="attn-no-init-fit"),
    pytest.param(finding("a.attn_logits", "act", role="attn_logits"), [init("a.attn_logits", -0.1, "attn_logits")],
                 None, None, (), "attn_sqrt_d", id="attn-flat-at-init"),
    pytest.param(finding("a.attn_logits", "act", role="attn_logits"), [init("a.attn_logits", -0.5, "attn_logits")],
                 None, None, (), None, id="attn-shrinking-at-init-is-1-over-d"),
    pytest.param(finding("readout", "act_delta", role="output"), [], ADAM_LIKE, None, (), "readout_unscaled",
                 id="readout-grows"),
    pytest.param(finding("<output>", "act", "vanishing", role="output", slope=-1.0), [], None, None, (),
                 "output_mult_twice", id="output-shrinks-like-1-over-width"),
    pytest.param(finding("<output>", "act", "vanishing", role="output", slope=-0.75), [], None, None, (),
                 "output_mult_twice", id="output-mult-twice-at-threshold"),
    pytest.param(finding("<output>", "act", "vanishing", role="output", slope=-0.6), [], None, None, (), None,
                 id="output-shrinks-mildly-is-generic"),
    pytest.param(finding(), [], ADAM_LIKE, None, (), "plain_adam", id="hidden-adam"),
    pytest.param(finding(), [], ORTHOGONALISED, None, (), "plain_adam", id="hidden-muon"),
    pytest.param(finding(), [], SGD_LIKE, None, (), "hidden_lr_unscaled", id="hidden-sgd"),
    pytest.param(finding(), [], None, None, (), "hidden_lr_unscaled", id="hidden-unknown-optimizer"),
    pytest.param(finding(verdict="vanishing", slope=-0.5), [], SGD_LIKE, None, (), "ntk_lazy", id="hidden-lazy"),
    pytest.param(finding("hidden.0", "act", "vanishing", slope=-0.5), [], SGD_LIKE, None, (), None,
                 id="hidden-act-vanishing-is-generic"),
    pytest.param(finding("input", verdict="vanishing", role="input", slope=-0.5), [], SGD_LIKE, None,
                 (finding(verdict="vanishing", slope=-0.5),), "ntk_lazy", id="input-lazy-with-hidden"),
    pytest.param(finding("input", verdict="vanishing", role="input", slope=-0.5), [], ADAM_LIKE, None, (),
                 "embedding_lr_scaled", id="input-alone"),
    pytest.param(finding("input", verdict="vanishing", role="input", slope=-0.5), [], ADAM_LIKE,
                 {"input.weight": -1.0}, (finding(verdict="vanishing", slope=-0.5),), "embedding_lr_scaled",
                 id="input-lr-shrinks-though-hidden-lazy"),
    pytest.param(finding("input", verdict="vanishing", role="input", slope=-0.5), [], ADAM_LIKE,
                 {"input.weight": -0.2}, (finding(verdict="vanishing", slope=-0.5),), "ntk_lazy",
                 id="input-lr-barely-shrinks"),
    pytest.param(finding("norm.weight", "act", role="vector"), [], ADAM_LIKE, None, (), None,
                 id="vector-is-generic"),
    pytest.param(finding("input", "act", "exploding", role="input"), [], ADAM_LIKE, None, (), None,
                 id="input-grows-is-generic"),
]


@pytest.mark.parametrize(("f", "rows", "family", "lr_slopes", "others", "expected"), CASES)
def test_each_finding_goes_to_the_first_rule_that_claims_it(f, rows, family, lr_slopes, others, expected):
    out, diagnoses = diagnose([f, *others], fits(*rows), family, lr_slopes)
    assert out[0].rule == expected
    assert out[0].hint  # every finding gets a hint
    if expected is None:
        assert out[0].hint == generic_hint(f)
        assert expected not in {d.rule for d in diagnoses}
    else:
        rule = RULES[RULE_IDS.index(expected)]
        assert rule.hint in out[0].hint
        assert f.name in next(d for d in diagnoses if d.rule == expected).layers


def test_loss_blowup_keeps_the_measured_growth_in_front_of_the_hint():
    f = finding("<loss>", "loss", "diverged", role="loss", slope=None,
                hint="the loss grew ×1e+06 (from 2.3 to 2.3e+06) at width 512 by step 4")
    out, _ = diagnose([f], NO_FITS)
    assert out[0].hint.startswith("the loss grew ×1e+06 (from 2.3 to 2.3e+06) at width 512 by step 4: ")
    assert out[0].hint.endswith(RULES[0].hint)


def test_diverged_hint_says_where_values_first_went_non_finite():
    out, _ = diagnose([finding("hidden.1", "act", "diverged", slope=None, first_step=3, first_width=1024)], NO_FITS)
    assert out[0].hint.endswith("(first at width 1024, step 3)")
    out, _ = diagnose([finding("hidden.1", "act", "diverged", slope=None)], NO_FITS)
    assert out[0].hint == RULES[RULE_IDS.index("diverged")].hint


# --- diagnose as a whole -----------------------------------------------------------------------------------


def test_diagnose_keeps_order_and_groups_layers_per_rule_in_rule_order():
    findings = [
        finding("hidden.0", "act"),
        finding("readout", "act", role="output"),
        finding("hidden.0", "act_delta"),
        finding("hidden.1", "act_delta", severity="warning"),
        finding("readout", "act_delta", role="output", severity="warning"),
        finding("norm", "act", "vanishing", role="vector", slope=-0.9),
    ]
    out, diagnoses = diagnose(findings, NO_FITS, ADAM_LIKE)
    assert [f.key for f in out] == [f.key for f in findings]
    assert [f.rule for f in out] == ["plain_adam", "readout_unscaled", "plain_adam", "plain_adam",
                                     "readout_unscaled", None]
    assert all(f.hint for f in out) and all(f.hint == "" for f in findings)  # inputs untouched
    # one diagnosis per rule that fired, in the rule table's order (readout_unscaled comes before plain_adam)
    assert [d.rule for d in diagnoses] == ["readout_unscaled", "plain_adam"]
    readout, adam = diagnoses
    assert adam.layers == ("hidden.0", "hidden.1")  # each name once, in the findings' order
    assert readout.layers == ("readout",)
    assert adam.severity == "error" and readout.severity == "error"
    assert out[-1].hint.startswith("shrinks with width (slope -0.90)")


def test_a_diagnosis_of_warnings_only_is_a_warning():
    _, diagnoses = diagnose([finding(severity="warning"), finding("hidden.1", severity="warning")], NO_FITS,
                            SGD_LIKE)
    assert [(d.rule, d.severity, d.layers) for d in diagnoses] == [
        ("hidden_lr_unscaled", "warning", ("hidden.0", "hidden.1"))]
    assert diagnoses[0].to_dict() == {"rule": "hidden_lr_unscaled", "title": diagnoses[0].title,
                                      "hint": diagnoses[0].hint, "layers": ["hidden.0", "hidden.1"],
                                      "severity": "warning"}


def test_no_findings_no_diagnoses():
    assert diagnose([], NO_FITS) == ([], [])
    assert diagnose(iter([]), NO_FITS, ADAM_LIKE, {"x.weight": -1.0}) == ([], [])


def test_context_reads_learning_rate_slopes_by_weight_name():
    ctx = Context(findings=[], init_slopes={}, lr_slopes={"wte.weight": -1.0, "weight": -0.5, "h.weight": -0.25})
    assert ctx.lr_shrinks("wte") and ctx.lr_shrinks("")  # a bare module: its own "weight"
    assert not ctx.lr_shrinks("h")  # −0.25 is not below −0.25
    assert not ctx.lr_shrinks("unknown")
    assert Context([], {}, family=None).normalised is None
    assert Context([], {}, family=SGD_LIKE).normalised is False
    assert Context([], {}, family=ADAM_LIKE).normalised is True
    assert Context([], {}, family=ORTHOGONALISED).normalised is True
    assert Context([finding(verdict="vanishing", slope=-0.5)], {}).hidden_vanishing
    assert not Context([finding("hidden.0", "act", "vanishing", slope=-0.5)], {}).hidden_vanishing


# --- generic hint and regime -------------------------------------------------------------------------------


def test_generic_hint():
    grows = generic_hint(finding(verdict="exploding", slope=0.734))
    assert grows.startswith("grows with width (slope +0.73)") and "not scaled for width" in grows
    shrinks = generic_hint(finding(verdict="vanishing", slope=-1.5))
    assert shrinks.startswith("shrinks with width (slope -1.50)") and "multiplier and learning rate" in shrinks
    assert generic_hint(finding(verdict="undetermined", slope=None)) == (
        "no positive finite values at two or more widths to fit a slope")


@pytest.mark.parametrize(("findings", "expected"), [
    ([], MU_P),
    ([finding(severity="warning"), finding("x", verdict="vanishing", slope=-1, severity="warning")], MU_P),
    ([finding(verdict="undetermined", slope=None), finding("hidden.1", verdict="undetermined", slope=None)],
     UNDETERMINED),
    ([finding(), finding("readout", role="output")], SP),
    ([finding("hidden.0", "act", "diverged", slope=None)], SP),
    ([finding(), finding("hidden.1", verdict="undetermined", slope=None)], SP),
    ([finding(verdict="vanishing", slope=-0.5), finding("input", verdict="vanishing", role="input", slope=-0.5)],
     NTK),
    ([finding("<output>", "act", "vanishing", role="output", slope=-1.0)], MIXED),
    ([finding("hidden.0", "act", "vanishing", slope=-0.5)], MIXED),
    ([finding(), finding("hidden.1", verdict="vanishing", slope=-0.5)], MIXED),
    ([finding(verdict="vanishing", slope=-0.5), finding("x", verdict="exploding", severity="warning")], NTK),
])
def test_regime(findings, expected):
    assert regime(findings) == expected


# --- what the rules measure --------------------------------------------------------------------------------


def test_init_slopes_are_step_0_activations_of_hidden_layers_and_attention_logits():
    table = fits(
        init("hidden.0", 0.5),
        init("a.attn_logits", -0.5, "attn_logits"),
        init("readout", 0.9, "output"),  # not hidden
        {"name": "hidden.1", "site": "act", "step": 1, "role": "hidden", "slope": 0.7},  # not t = 0
        {"name": "hidden.1", "site": "param_grad", "step": 0, "role": "hidden", "slope": 0.7},  # not act
        {"name": "hidden.2", "site": "act", "step": 0, "role": "hidden", "slope": None},  # no slope
    )
    assert init_slopes(table) == {"hidden.0": 0.5, "a.attn_logits": -0.5}


def update(name: str, step: int, update_slope: float, grad_slope: float, update_level: float = 0.0,
           grad_level: float = 0.0, probe: str = "rms") -> list[dict[str, Any]]:
    common = {"name": name, "step": step, "role": "hidden", "probe": probe}
    return [{**common, "site": "param_update", "slope": update_slope, "intercept": update_level},
            {**common, "site": "param_grad", "slope": grad_slope, "intercept": grad_level}]


def test_first_updates_pairs_update_and_gradient_at_the_first_step_with_both():
    table = fits(
        {"name": "h", "site": "param_grad", "step": 0, "role": "hidden", "slope": None},  # zero gradient at t = 0
        *update("h", 1, -0.5, -1.0, update_level=-7.0, grad_level=-3.0),
        *update("h", 2, 0.3, 0.3),
        *update("h", 0, 0.9, 0.9, probe="spectral"),  # spectral norms answer another question
        *update("readout", 1, 0.0, 0.0)[:1],
    )
    pairs = first_updates(table)
    assert pairs.select("name", "step", "update", "grad", "update_level", "grad_level").rows() == [
        ("h", 1, -0.5, -1.0, -7.0, -3.0)]
    assert gradient_levels(table) == {"h": -3.0}


@pytest.mark.parametrize(("rows", "rates", "expected"), [
    ([], None, None),
    (update("readout", 1, 0.0, -1.0)[:1], None, None),  # an update without a gradient: nothing to compare
    (update("h1", 1, -1.0, -1.0) + update("h2", 1, -0.95, -1.0), None, SGD_LIKE),  # update follows the gradient
    (update("h1", 1, 0.0, -1.0) + update("h2", 1, 0.05, -0.5), None, ADAM_LIKE),  # sign-like: flat update
    (update("h1", 1, -0.5, -1.0) + update("h2", 1, -0.45, -1.0), None, ORTHOGONALISED),
    # the update's slope per unit of lr: an lr shrinking like 1/width with an update like 1/width is flat per lr
    (update("h1", 1, -1.0, 0.0), {"h1": (-6.0, -1.0)}, ADAM_LIKE),
    # SGD: update = lr × gradient, slope and level (log2 lr = −6 here)
    (update("h1", 1, -1.0, -1.0, update_level=-9.0, grad_level=-3.0), {"h1": (-6.0, 0.0)}, SGD_LIKE),
    # same slopes, but the update's size ignores the learning rate: normalised, not SGD
    (update("h1", 1, 0.0, 0.0, update_level=-3.0, grad_level=-3.0), {"h1": (-6.0, 0.0)}, ADAM_LIKE),
    # the median decides: one odd layer does not
    (update("a", 1, 0.0, -1.0) + update("b", 1, 0.0, -1.0) + update("c", 1, -1.0, -1.0), None, ADAM_LIKE),
])
def test_optimizer_family(rows, rates, expected):
    assert optimizer_family(fits(*rows), rates) == expected


# --- end to end on recorded runs ---------------------------------------------------------------------------


def test_recorded_sp_run_readout_and_plain_adam(tmp_path, mlp_runs):
    run = tmp_path / "sp"
    shutil.copytree(mlp_runs["mlp-sp"], run)
    report = check_run(run)
    assert report.optimizer_family == ADAM_LIKE
    assert report.regime == SP == regime(report.findings)
    layers = {d.rule: set(d.layers) for d in report.diagnoses}
    # the hidden weights' updates, grown against the weights, are the same plain-Adam bug (the readout's
    # own ratio is shown, not judged: μP leaves a readout free to start small)
    assert layers == {"readout_unscaled": {"readout", "<output>"},
                      "plain_adam": {"hidden.0", "hidden.1", "hidden.0.weight", "hidden.1.weight"}}
    assert all(f.rule in layers and f.hint for f in report.findings)

    # the same findings under a measured SGD-like optimizer point at the per-layer learning rates instead
    bare = [replace(f, hint="", rule=None) for f in report.findings]
    again, _ = diagnose(bare, report.fits, ADAM_LIKE)
    assert [(f.key, f.rule, f.hint) for f in again] == [(f.key, f.rule, f.hint) for f in report.findings]
    _, diagnoses = diagnose(bare, report.fits, SGD_LIKE)
    assert {d.rule: set(d.layers) for d in diagnoses} == {
        "readout_unscaled": {"readout", "<output>"},
        "hidden_lr_unscaled": {"hidden.0", "hidden.1", "hidden.0.weight", "hidden.1.weight"}}


def test_recorded_ntk_and_mup_runs(tmp_path, mlp_runs):
    for name in ("mlp-ntk", "mlp-mup"):
        shutil.copytree(mlp_runs[name], tmp_path / name)
    ntk = check_run(tmp_path / "mlp-ntk")
    assert ntk.optimizer_family == SGD_LIKE and ntk.regime == NTK
    layers = {d.rule: set(d.layers) for d in ntk.diagnoses}
    assert layers == {"ntk_lazy": {"input", "hidden.0", "hidden.1", "hidden.0.weight", "hidden.1.weight"}}
    assert all(f.verdict == "vanishing" for f in ntk.findings)
    assert {f.site for f in ntk.findings if f.rule == "ntk_lazy"} == {"act_delta", "param_update"}
    mup = check_run(tmp_path / "mlp-mup")
    assert mup.findings == [] and mup.diagnoses == [] and mup.regime == MU_P


class ConstantStdMLP(nn.Module):
    """input → ReLU → hidden → ReLU → readout; every weight N(0, std) with std 0.02 (GPT-2 style) or 1/√fan_in."""

    def __init__(self, width: int, constant_std: bool) -> None:
        super().__init__()
        self.input, self.hidden, self.readout = nn.Linear(16, width), nn.Linear(width, width), nn.Linear(width, 4)
        for layer in (self.input, self.hidden, self.readout):
            nn.init.normal_(layer.weight, std=0.02 if constant_std else layer.in_features ** -0.5)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(torch.relu(self.hidden(torch.relu(self.input(x)))))


def _batches():
    g = torch.Generator().manual_seed(0)
    while True:
        yield torch.randn(32, 16, generator=g), torch.randint(0, 4, (32,), generator=g)


@pytest.mark.parametrize(("constant_std", "hidden_rule"), [(True, "sp_init_constant_std"), (False, "plain_adam")])
def test_constant_init_std_is_recognised_from_the_slope_at_t0(tmp_path, constant_std, hidden_rule):
    spec = Spec(model=lambda width: ConstantStdMLP(width, constant_std), batches=_batches, ref="const-std")
    report = coordscope.check(spec, widths=[32, 128, 512], steps=2, seeds=1, out=tmp_path / "run", progress=False)
    slopes = init_slopes(report.fits)
    assert (slopes["hidden"] >= 0.35) is constant_std
    if constant_std:
        assert math.isclose(slopes["hidden"], 0.5, abs_tol=0.15)  # std 0.02 at fan_in = width: rms ∝ √width
    hidden = [f for f in report.findings if f.name == "hidden"]
    assert hidden and all(f.rule == hidden_rule for f in hidden)
    assert hidden_rule in {d.rule for d in report.diagnoses}
    assert isinstance(report.diagnoses[0], Diagnosis)
