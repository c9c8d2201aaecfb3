"""From findings to causes: rules that recognise the common μP bugs by the pattern of slopes they leave.

Each :class:`Rule` claims the findings that fit its pattern (a role, a site, a direction, sometimes the
optimizer or what the other layers do) and names the likely cause and the fix. Rules are tried in order: a
finding's hint is that of the first rule that claims it, and it is listed under every rule that does (a
layer can have two causes); a finding no rule claims gets a generic one. The rule ids are stable (samples
and tests refer to them):

============================  ===========================================================================
``loss_blowup``               the loss grew ten-fold or more during the check, or became NaN/inf
``diverged``                  non-finite values appeared
``undetermined``              a judged layer has no step with a slope (nothing moved yet, or one width)
``sp_init_constant_std``      hidden activations already grow at t = 0 (constant-std init, e.g. 0.02)
``attn_sqrt_d``               attention logits grow after training (1/√d instead of 1/d)
``readout_unscaled``          the output grows after a step (readout not scaled by 1/width)
``output_mult_twice``         the output vanishes like 1/width (output multiplier applied twice)
``plain_adam``                hidden features' change grows and the optimizer's update size does not follow
                              the gradient's (Adam-like: hidden LR not scaled by 1/width)
``hidden_lr_unscaled``        hidden features' change grows and the update follows the gradient (SGD-like),
                              or the run has no updates to tell
``ntk_lazy``                  hidden features' change vanishes (NTK-like, lazy)
``embedding_lr_scaled``       only the input layer's change vanishes (its LR scaled down with width)
``output_grad``               the loss's gradient at the model's output grows or shrinks (follows the output,
                              or a width-dependent factor in the loss)
============================  ===========================================================================

The whole model also gets a regime label (:func:`regime`): ``μP-like``, ``SP-like (exploding)``,
``NTK-like (lazy)``, ``mixed`` or ``undetermined``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl

from coordscope.analysis import RELATIVE, Finding

MU_P = "μP-like"
SP = "SP-like (exploding)"
NTK = "NTK-like (lazy)"
MIXED = "mixed"
UNDETERMINED = "undetermined"

INIT_GROWTH = 0.35  # a hidden activation growing faster than width^0.35 at t = 0 is not a 1/fan_in init
DOUBLE_MULT = -0.75  # an output shrinking faster than width^-0.75 has lost more than the init's width^-0.5
ATTN_INIT_DECAY = -0.25  # attention logits at t = 0 shrinking faster than this are scaled by 1/d (TP5 D.2)


LR_SHRINKS = 0.25  # a learning rate whose slope in width is below −0.25 is scaled down with width
SGD_GAP = 0.1  # |slope(update/lr) − slope(gradient)| up to which the first update is lr × gradient (SGD)
SGD_LEVEL = 0.2  # |log2(update / (lr × gradient))| up to which it is, in size (momentum's first step is exact)
ADAM_LIKE, SGD_LIKE, ORTHOGONALISED = "Adam-like", "SGD-like", "orthogonalised"


@dataclass(frozen=True)
class Context:
    """What rules may look at besides the finding itself — all of it measured, never read from names.

    ``family`` is how the optimizer moved the hidden weights (:func:`optimizer_family`): ``Adam-like``,
    ``orthogonalised``, ``SGD-like``, or None when the run has no hidden update and gradient to compare.
    """

    findings: Sequence[Finding]
    init_slopes: Mapping[str, float]  # slope at t = 0 of each hidden activation and attention logits
    family: str | None = None
    lr_slopes: Mapping[str, float] = field(default_factory=dict)  # parameter → its learning rate's slope

    def grew_at_init(self, f: Finding) -> bool:
        """An activation (not its change) that already grew at t = 0: the init explains it, not the lr."""
        return f.site == "act" and self.init_slopes.get(f.name, 0.0) >= INIT_GROWTH

    def lr_shrinks(self, module: str) -> bool:
        """Whether the learning rate of ``module``'s weight falls with width (read from the optimizer)."""
        return self.lr_slopes.get(f"{module}.weight" if module else "weight", 0.0) < -LR_SHRINKS

    @property
    def normalised(self) -> bool | None:
        """Whether the update's size is set by the optimizer rather than by the gradient."""
        return None if self.family is None else self.family != SGD_LIKE

    @property
    def hidden_vanishing(self) -> bool:
        """Whether some hidden layer's change after a step vanishes with width."""
        return any(_is(f, "hidden", "act_delta", "vanishing") for f in self.findings)


def _is(f: Finding, role: str, site: str | None, verdict: str) -> bool:
    return f.role == role and (site is None or f.site == site) and f.verdict == verdict


def _relative(f: Finding) -> bool:
    """A weight's update relative to the weight (:func:`coordscope.analysis.relative_updates`)."""
    return f.probe.startswith(RELATIVE)


@dataclass(frozen=True)
class Rule:
    """A pattern of findings (``claims``), what it means (``title``) and what to change (``hint``)."""

    id: str
    title: str
    hint: str
    claims: Callable[[Finding, Context], bool]


RULES: tuple[Rule, ...] = (
    Rule("loss_blowup", "Training blew up (the loss grew ten-fold or more, or became NaN/inf)",
         "the loss exploded during the check: the learning rate is far too "
         "large for the widest models, or some update grows with width (see the layers flagged exploding). "
         "A μP model trains stably at the same learning rate at every width; lower it, and fix the growing "
         "layers first",
         lambda f, ctx: f.site == "loss" and f.verdict == "diverged"),
    Rule("diverged", "Training diverged (non-finite values)",
         "values became NaN/inf: some update is too large at the widest widths; fix the layers flagged as "
         "exploding (a μP model is stable at the same learning rate at every width) or lower the learning rate",
         lambda f, ctx: f.verdict == "diverged"),
    Rule("undetermined", "Could not be judged",
         "no judged step of this layer has a slope: its values were exactly 0 at every width (nothing moved "
         "yet — a zero-initialised readout gives hidden layers no gradient at the first step) or present at "
         "fewer than two widths. Record more steps (--steps 3 or more) and at least two widths; a check that "
         "cannot judge a layer does not pass",
         lambda f, ctx: f.verdict == "undetermined" and f.severity == "error"),
    Rule("sp_init_constant_std", "Hidden activations grow at initialisation",
         "hidden activations already grow with width at t = 0, as with a constant init std such as 0.02: "
         "initialise hidden weights with variance 1/fan_in (std = fan_in**-0.5)",
         lambda f, ctx: f.role == "hidden" and f.verdict == "exploding"
         and ctx.init_slopes.get(f.name, 0.0) >= INIT_GROWTH),
    Rule("attn_sqrt_d", "Attention logits scaled by 1/√d",
         "attention logits are d_head^0.5 too large (at init they should shrink like d_head^-0.5; after "
         "training they grow once queries and keys correlate): μP scales attention by 1/d_head, not "
         "1/√d_head (e.g. scaled_dot_product_attention(..., scale=1/d_head))",
         # Measured, not assumed: under 1/d the logits at t = 0 shrink like d_head^-0.5; where they do, the
         # scale is right and growth after training comes from the query/key learning rates instead.
         lambda f, ctx: f.role == "attn_logits" and f.verdict == "exploding"
         and ctx.init_slopes.get(f.name, 0.0) > ATTN_INIT_DECAY),
    Rule("readout_unscaled", "Readout not scaled by 1/width",
         "the output grows with width after a step: multiply the readout by 1/width_mult (mup.MuReadout, "
         "or an output multiplier base_width/width), or initialise the readout at zero / with variance "
         "1/width²",
         lambda f, ctx: f.role == "output" and f.verdict == "exploding" and not _relative(f) and f.site != "act_grad"),
    Rule("output_mult_twice", "Output multiplier applied twice",
         "the output shrinks like 1/width: the 1/width output multiplier seems applied twice (e.g. "
         "MuReadout plus a manual division by width_mult, or in both init and forward): apply it once",
         lambda f, ctx: f.role == "output" and f.verdict == "vanishing" and f.slope is not None
         and f.slope <= DOUBLE_MULT and not _relative(f) and f.site != "act_grad"),
    Rule("plain_adam", "Hidden learning rate not scaled for an Adam-like optimizer",
         "hidden features change faster in wider models, and the optimizer's update size does not follow "
         "the gradient's (measured on the first update): with Adam, AdamW, Lion or other sign-like updates, "
         "μP divides the learning rate of hidden (width × width) weights by width_mult (mup.MuAdam, or a "
         "param group with lr / width_mult for the hidden matrices); with an orthogonalised update (Muon), "
         "keep the update's spectral norm ∝ √(fan_out/fan_in) (torch's default adjust_lr_fn, not "
         "match_rms_adamw, which grows it like √width)",
         lambda f, ctx: f.role == "hidden" and f.verdict == "exploding" and ctx.normalised is True
         and not ctx.grew_at_init(f)),
    Rule("hidden_lr_unscaled", "Hidden updates grow with width",
         "hidden features change faster in wider models: under μP with SGD (the update follows the "
         "gradient) the hidden learning rate stays constant, input and output layers get lr × width_mult "
         "and the readout output is multiplied by 1/width_mult (mup.MuSGD with MuReadout); check the "
         "readout multiplier and per-layer learning rates",
         lambda f, ctx: f.role == "hidden" and f.verdict == "exploding" and ctx.normalised is not True
         and not ctx.grew_at_init(f)),
    Rule("ntk_lazy", "NTK-like (lazy) features",
         "hidden features move like width^-0.5, as in the NTK parametrization: wide models stop learning "
         "features. Use μP: 1/fan_in init for hidden weights, readout multiplier 1/width_mult, and per-layer "
         "learning rates that do not shrink with fan-in (mup.MuSGD / mup.MuAdam)",
         lambda f, ctx: (f.site == "act_delta" and f.verdict == "vanishing" and (
             f.role == "hidden" or (f.role == "input" and ctx.hidden_vanishing and not ctx.lr_shrinks(f.name))))
         or (_relative(f) and _is(f, "hidden", None, "vanishing"))),
    Rule("embedding_lr_scaled", "Input/embedding learning rate scaled down with width",
         "the input (embedding) layer stops learning as width grows while hidden layers are fine: under μP "
         "the input layer's learning rate must not shrink with width (Adam: it keeps the base LR; only "
         "hidden matrices get lr / width_mult)",
         lambda f, ctx: f.role == "input" and f.site == "act_delta" and f.verdict == "vanishing"
         and (not ctx.hidden_vanishing or ctx.lr_shrinks(f.name))),
    Rule("output_grad", "The loss's gradient at the output changes with width",
         "dLoss/d(output) is a function of the output alone, so it scales with width only when the output "
         "does (fix the output's layers first: a saturated softmax shrinks it) or when the loss itself "
         "carries a width-dependent factor (a loss multiplied by width_mult, or summed over a dimension that "
         "grows with width): keep the loss a mean over tokens and outputs",
         lambda f, ctx: f.name == "<output>" and f.site == "act_grad" and f.verdict in ("exploding", "vanishing")),
)

RULE_IDS: tuple[str, ...] = tuple(rule.id for rule in RULES)


def generic_hint(f: Finding) -> str:
    """The hint of a finding no rule explains."""
    if f.verdict == "exploding":
        return (f"grows with width (slope {f.slope:+.2f}): an init scale, output multiplier or learning rate "
                "of this layer is not scaled for width")
    if f.verdict == "vanishing":
        return (f"shrinks with width (slope {f.slope:+.2f}): this layer contributes or learns less in wider "
                "models; check its multiplier and learning rate")
    return "no positive finite values at two or more widths to fit a slope"


@dataclass(frozen=True)
class Diagnosis:
    """A rule that fired: its id, title, hint, the layer names it explains, and how bad (error/warning)."""

    rule: str
    title: str
    hint: str
    layers: tuple[str, ...]
    severity: str

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "title": self.title, "hint": self.hint, "layers": list(self.layers),
                "severity": self.severity}


def _finding_hint(rule: Rule, f: Finding) -> str:
    if rule.id == "loss_blowup" and f.hint:
        return f"{f.hint}: {rule.hint}"
    if rule.id == "diverged" and f.first_step is not None:
        return f"{rule.hint} (first at width {f.first_width}, step {f.first_step})"
    return rule.hint


def init_slopes(fits: pl.DataFrame) -> dict[str, float]:
    """Slope at t = 0 of every hidden activation (``sp_init_constant_std``) and attention logits
    (``attn_sqrt_d``)."""
    rows = fits.filter((pl.col("step") == 0) & (pl.col("site") == "act")
                       & pl.col("role").is_in(["hidden", "attn_logits"]) & pl.col("slope").is_not_null())
    return {name: float(slope) for name, slope in rows.select("name", "slope").iter_rows()}


def first_updates(fits: pl.DataFrame) -> pl.DataFrame:
    """Per hidden matrix, the slopes of its update and its gradient (``update``, ``grad``) and their log2
    levels at the centre width (``update_level``, ``grad_level``) at the first step where both have one
    (a zero-initialised readout leaves the hidden gradients exactly 0 at t = 0).
    Entry-size probes only: the spectral norms and the updates relative to the weights answer other
    questions."""
    probe = pl.col("probe")
    hidden = fits.filter((pl.col("role") == "hidden") & (probe != "spectral") & ~probe.str.starts_with("rel_")
                         & pl.col("slope").is_not_null())
    return (hidden.filter(pl.col("site") == "param_update")
            .select("name", "step", update="slope", update_level="intercept")
            .join(hidden.filter(pl.col("site") == "param_grad").select("name", "step", grad="slope",
                                                                        grad_level="intercept"),
                  on=["name", "step"])
            .sort("step").group_by("name").first())


def gradient_levels(fits: pl.DataFrame) -> dict[str, float]:
    """Each hidden matrix's log2 gradient rms at the centre width, at its first step with an update."""
    pairs = first_updates(fits)
    return dict(zip(pairs["name"].to_list(), pairs["grad_level"].to_list(), strict=True))


def optimizer_family(fits: pl.DataFrame, learning_rates: Mapping[str, tuple[float, float]] | None = None
                     ) -> str | None:
    """How the optimizer moved the hidden matrices, measured; None without the data.

    Per hidden matrix, at its first step with both an update and a gradient. ``learning_rates`` gives each
    parameter's log2 learning rate at the fits' centre width and its slope in width (from the optimizer's
    groups; unknown ones count as a constant 1). SGD's first update is lr × gradient: its size is the
    gradient's times lr at every width — slope *and* level (:data:`SGD_LIKE`). Otherwise the update is
    normalised, and its slope per unit of learning rate is about 0 for sign-like updates (Adam, AdamW,
    Lion: :data:`ADAM_LIKE`) and about −½ for orthogonalised ones (Muon's square matrices:
    :data:`ORTHOGONALISED`). The median over hidden matrices decides, so one odd layer does not.
    """
    pairs = first_updates(fits)
    if pairs.is_empty():
        return None
    known = dict(learning_rates or {})
    level = pl.col("name").replace_strict({n: v[0] for n, v in known.items()}, default=0.0, return_dtype=pl.Float64)
    slope = pl.col("name").replace_strict({n: v[1] for n, v in known.items()}, default=0.0, return_dtype=pl.Float64)
    per_lr = pairs.with_columns(per_lr=pl.col("update") - slope,
                                level_gap=(pl.col("update_level") - level - pl.col("grad_level")).abs())
    gap = per_lr.select((pl.col("per_lr") - pl.col("grad")).abs().median()).item()
    level_gap = per_lr.select(pl.col("level_gap").median()).item() if known else 0.0
    if gap is not None and float(gap) <= SGD_GAP and level_gap is not None and float(level_gap) <= SGD_LEVEL:
        return SGD_LIKE
    typical = per_lr.select(pl.col("per_lr").median()).item()
    return None if typical is None else (ORTHOGONALISED if float(typical) < -0.25 else ADAM_LIKE)


def diagnose(findings: Iterable[Finding], fits: pl.DataFrame, family: str | None = None,
             lr_slopes: Mapping[str, float] | None = None) -> tuple[list[Finding], list[Diagnosis]]:
    """Claim each finding for the first rule that fits; return the findings with their ``hint`` and
    ``rule`` filled in, and one :class:`Diagnosis` per rule that fired (in rule order). ``family``: the
    measured :func:`optimizer_family` (None: the hints that depend on it say so); ``lr_slopes``: each
    parameter's learning-rate slope in width, from the optimizer's groups."""
    found = list(findings)
    ctx = Context(findings=found, init_slopes=init_slopes(fits), family=family, lr_slopes=dict(lr_slopes or {}))
    claimed: dict[str, list[Finding]] = {}
    out: list[Finding] = []
    for f in found:
        rules = [r for r in RULES if r.claims(f, ctx)]
        if not rules:
            out.append(replace(f, hint=generic_hint(f)))
            continue
        f = replace(f, hint=_finding_hint(rules[0], f), rule=rules[0].id)
        # A layer can have two causes at once (GPT-2's SP: a constant init std *and* an unscaled hidden
        # learning rate): it is listed under every rule that fits, and its own hint is the first one's.
        for rule in rules:
            claimed.setdefault(rule.id, []).append(f)
        out.append(f)
    diagnoses = [
        Diagnosis(rule.id, rule.title, rule.hint, tuple(dict.fromkeys(f.name for f in claimed[rule.id])),
                  "error" if any(f.severity == "error" for f in claimed[rule.id]) else "warning")
        for rule in RULES if rule.id in claimed
    ]
    return out, diagnoses


def regime(findings: Sequence[Finding]) -> str:
    """The model's regime: no errors → μP-like; only layers that could not be judged → undetermined; only
    growth (or divergence) → SP-like; only shrinking, hidden features among them → NTK-like; anything else
    → mixed."""
    errors = [f for f in findings if f.severity == "error"]
    if not errors:
        return MU_P
    # the gradient at the output follows the output (a growing output saturates the softmax and shrinks
    # it): a consequence, not a second regime, unless nothing else is wrong
    errors = [f for f in errors if f.site != "act_grad"] or errors
    if all(f.verdict == "undetermined" for f in errors):
        return UNDETERMINED
    growing = any(f.verdict in ("exploding", "diverged") for f in errors)
    shrinking = [f for f in errors if f.verdict == "vanishing"]
    if growing and not shrinking:
        return SP
    if shrinking and not growing and any(_is(f, "hidden", "act_delta", "vanishing") for f in shrinking):
        return NTK
    return MIXED
