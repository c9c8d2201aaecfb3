"""The sample models, reachable by short name (``coordscope samples`` lists them).

Each entry points at a :class:`coordscope.Spec` inside this package. Samples come in parametrizations
(``sp``, ``mup``, ``ntk``) and as named planted μP bugs, so that coordscope's verdicts can be held
against cases whose right answer is known. ``expect`` says what a correct checker must conclude.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sample:
    """A registered sample: where its spec lives, one line about it, and the verdict it should get."""

    target: str
    description: str
    expect: str  # "pass" (μP-correct) or "fail" (a checker must flag it)
    culprit: str = ""  # for planted bugs: a substring of the layer name the findings must name
    bug: str = ""  # for planted bugs: the diagnosis rule id that must fire
    axis: str = "width"  # what the verdict is about: "width" (a width check), "depth" (a depth sweep) or the
    # declared dimension its DEFAULTS sweep ("d_ff": a dimension sweep; the verdict holds for each dimension)


_GPT = "coordscope.sample_models.gpt"
_CNN = "coordscope.sample_models.cnn"
_STRUCT = "coordscope.sample_models.structures"
_OPT = "coordscope.sample_models.optimizers"
_DEEP = "coordscope.sample_models.completep"
_DIMS = "coordscope.sample_models.dims"

SAMPLES: dict[str, Sample] = {
    "mlp-mup": Sample("coordscope.sample_models.mlp:MUP", "MLP, μP, Adam (TP5 Table 3)", "pass"),
    "mlp-mup-sgd": Sample("coordscope.sample_models.mlp:MUP_SGD", "MLP, μP, SGD (TP5 Table 3)", "pass"),
    "mlp-sp": Sample("coordscope.sample_models.mlp:SP", "MLP, standard parametrization, Adam", "fail", "readout"),
    "mlp-ntk": Sample("coordscope.sample_models.mlp:NTK", "MLP, NTK parametrization, SGD (lazy)", "fail", "hidden"),
    "gpt-mup-sweep": Sample("coordscope.sample_models.sweeps:MUP", "GPT, μP, on the stdlib corpus (LR sweeps)", "pass"),
    "gpt-sp-sweep": Sample("coordscope.sample_models.sweeps:SP", "GPT, SP, on the stdlib corpus (LR sweeps)", "fail",
                           "mlp.c_proj"),
    "gpt-mup": Sample(f"{_GPT}:MUP", "GPT decoder, μP, Adam (TP5 Table 3, 1/d attention)", "pass"),
    "gpt-sp": Sample(f"{_GPT}:SP", "GPT decoder, standard parametrization, Adam", "fail", "mlp.c_proj"),
    "gpt-sp-gpt2-init": Sample(f"{_GPT}:SP_GPT2_INIT", "GPT decoder, SP with GPT-2's constant init std 0.02",
                               "fail", "mlp.c_proj", "sp_init_constant_std"),
    "gpt-bug-plain-adam": Sample(f"{_GPT}:BUG_PLAIN_ADAM", "GPT, μP trained with plain Adam (hidden LR not / m)",
                                 "fail", "mlp.c_fc", "plain_adam"),
    "gpt-bug-readout-unscaled": Sample(f"{_GPT}:BUG_READOUT_UNSCALED", "GPT, μP without the readout's 1/m",
                                       "fail", "lm_head", "readout_unscaled"),
    "gpt-bug-output-mult-twice": Sample(f"{_GPT}:BUG_OUTPUT_MULT_TWICE", "GPT, μP with the readout's 1/m applied "
                                        "twice", "fail", "lm_head", "output_mult_twice"),
    "gpt-bug-attn-sqrt-d": Sample(f"{_GPT}:BUG_ATTN_SQRT_D", "GPT, μP with 1/√d attention instead of 1/d",
                                  "fail", "attn_logits", "attn_sqrt_d"),
    "gpt-bug-embedding-lr": Sample(f"{_GPT}:BUG_EMBEDDING_LR", "GPT, μP with the embeddings' LR divided by m",
                                   "fail", "wte", "embedding_lr_scaled"),
    "cnn-mup": Sample(f"{_CNN}:MUP", "CNN (channels = width), μP, Adam", "pass"),
    "cnn-sp": Sample(f"{_CNN}:SP", "CNN (channels = width), standard parametrization, Adam", "fail", "convs"),
    "cnn-bug-plain-adam": Sample(f"{_CNN}:BUG_PLAIN_ADAM", "CNN, μP trained with plain Adam", "fail", "convs",
                                 "plain_adam"),
    "gpt-forward-mult": Sample(f"{_STRUCT}:FORWARD_MULT", "GPT, μP, readout multiplier applied in forward() "
                               "(Granite/MiniCPM style)", "pass"),
    "gpt-zero-readout": Sample(f"{_STRUCT}:ZERO_READOUT", "GPT, μP, zero-initialised readout (mup's examples)", "pass"),
    "gpt-zero-readout-plain-adam": Sample(f"{_STRUCT}:ZERO_READOUT_PLAIN_ADAM", "GPT, zero-initialised readout, "
                                          "plain Adam", "fail", "mlp.c_fc", "plain_adam"),
    "gpt-parent-attn": Sample(f"{_STRUCT}:PARENT_ATTN", "GPT, μP, attention run by the model's forward() for "
                              "every block (SDPA called several times by one module)", "pass"),
    "gpt-eager-attn": Sample(f"{_STRUCT}:EAGER_ATTN", "GPT, μP, attention by matmul + softmax", "pass"),
    "gpt-eager-attn-sqrt-d": Sample(f"{_STRUCT}:EAGER_ATTN_SQRT_D", "GPT, μP, matmul + softmax attention with "
                                    "1/√d", "fail", "attn_logits", "attn_sqrt_d"),
    "mlp-muon": Sample(f"{_OPT}:MUON", "MLP, μP, Muon on hidden matrices (torch's default scale) + Adam", "pass"),
    "mlp-muon-match-rms": Sample(f"{_OPT}:MUON_MATCH_RMS", "MLP, Muon with match_rms_adamw at a constant lr", "fail",
                                 "hidden", "plain_adam"),
    "mlp-schedulefree": Sample(f"{_OPT}:SCHEDULEFREE", "MLP, μP, AdamWScheduleFree with μP groups", "pass"),
    "mlp-schedulefree-one-lr": Sample(f"{_OPT}:SCHEDULEFREE_ONE_LR", "MLP, AdamWScheduleFree, one lr for all",
                                      "fail", "hidden", "plain_adam"),
    "mlp-lion": Sample(f"{_OPT}:LION", "MLP, μP, Lion (sign-type updates) with μP's Adam groups", "pass"),
    "mlp-lion-one-lr": Sample(f"{_OPT}:LION_ONE_LR", "MLP, Lion, one lr for all", "fail", "hidden", "plain_adam"),
    "hf-tied-mup": Sample("coordscope.sample_models.hf_style:MUP", "HF-style LM (dict batch, returns .loss, tied "
                          "embeddings, buffer, frozen parameter), μP, Adam", "pass"),
    # Depth samples: model(width, depth); their verdict is that of a depth sweep (DEFAULTS["depths"]).
    "gpt-completep": Sample(f"{_DEEP}:COMPLETEP", "deep GPT, CompleteP (branches × 1/L, Dey et al. 2025)", "pass",
                            axis="depth"),
    "gpt-depth-mup": Sample(f"{_DEEP}:DEPTH_MUP", "deep GPT, Depth-μP (branches × 1/√L, LR × 1/√L; TP6)", "pass",
                            axis="depth"),
    "gpt-depth-unscaled": Sample(f"{_DEEP}:UNSCALED", "deep GPT, μP in width, residual branches not scaled "
                                 "with depth", "fail", "blocks", "branch_unscaled", axis="depth"),
    "gpt-depth-lr-unscaled": Sample(f"{_DEEP}:LR_UNSCALED", "deep GPT, branches × 1/√L but the hidden LR "
                                    "constant in depth", "fail", "blocks", "depth_lr_unscaled", axis="depth"),
    "gpt-depth-overscaled": Sample(f"{_DEEP}:OVERSCALED", "deep GPT, branches × 1/L with Depth-μP's LR × 1/√L",
                                   "fail", "blocks", "depth_overscaled", axis="depth"),
    # Their LR-sweep variants, on the stdlib corpus: CompleteP's optimum should transfer across depth.
    "gpt-completep-sweep": Sample(f"{_DEEP}:COMPLETEP_SWEEP", "deep GPT, CompleteP, on the stdlib corpus (LR "
                                  "sweeps across depth)", "pass", axis="depth"),
    "gpt-depth-unscaled-sweep": Sample(f"{_DEEP}:UNSCALED_SWEEP", "deep GPT, residual branches not scaled with "
                                       "depth, on the stdlib corpus (LR sweeps across depth)", "fail", "blocks",
                                       "branch_unscaled", axis="depth"),
    # Dimension samples: model(width, d_ff=, n_heads=, n_experts=), one dimension swept at a time (--dim).
    "dims-mup": Sample(f"{_DIMS}:MUP", "one-block transformer, μP in d_ff and n_heads, top-k gates renormalised "
                       "(sweep one of d_ff, n_heads, n_experts with --dim)", "pass", axis="d_ff"),
    "dims-sp": Sample(f"{_DIMS}:SP", "one-block transformer, SP, Switch-style gates (sweep one of d_ff, n_heads, "
                      "n_experts with --dim)", "fail", "c_proj", axis="d_ff"),
}
