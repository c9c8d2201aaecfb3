"""The GPT sample made deep: ``model(width, depth)`` with residual branches scaled by depth, for depth
coordinate checks (``coordscope check gpt-completep --depths 2,4,8,16``).

The blocks are :mod:`coordscope.sample_models.gpt`'s pre-LN blocks with every residual branch multiplied by
``m_L^-α``, ``m_L = depth / BASE_DEPTH``: ``x + m_L^-α · attn(ln(x))``, then ``x + m_L^-α · mlp(ln(x))``.
Width follows μP exactly as in the GPT sample (``m_N = width / BASE_WIDTH``). The Adam rules are
CompleteP's Table 1 (Dey et al. 2025, "Don't be lazy: CompleteP enables compute-efficient deep
transformers"), for a branch exponent α:

==================  =====================  ===========================  ==========================
                    embeddings             hidden matrices in blocks     LayerNorm gains/biases
==================  =====================  ===========================  ==========================
Adam LR             η                      η · m_N^-1 · m_L^(α−1)        η · m_L^(α−1)
Adam ε              ε                      ε · m_N^-1 · m_L^-α           ε
==================  =====================  ===========================  ==========================

The readout and final LayerNorm keep their μP width rules (they are not in a residual branch).

Variants (``PARAMETRIZATIONS``):

``completep``   α = 1 (CompleteP): branches × 1/m_L, hidden LR constant in depth
``depth-mup``   α = ½ (Depth-μP, Tensor Programs VI; Bordelon et al. 2023): branches × m_L^-½, hidden LR × m_L^-½
``unscaled``    no branch multiplier (α = 0) and the hidden LR constant in depth: the plain deep GPT, μP in
                width only — the change of the residual stream grows with depth
``lr-unscaled`` Depth-μP's m_L^-½ branch multiplier but the hidden LR left constant in depth (CompleteP's
                LR rule for α = ½ missed): flat at initialisation, the stream's change grows like m_L^½
``overscaled``  CompleteP's 1/m_L branches with Depth-μP's η/√m_L learning rate: the stream's change shrinks
                like m_L^-½
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from coordscope.sample_models import gpt, sweeps
from coordscope.spec import Spec

BASE_DEPTH = 2
DEPTHS = [2, 4, 8, 16]
WIDTH = 64
# What `coordscope sweep gpt-completep-sweep` (and gpt-depth-unscaled-sweep) runs without flags: one width,
# depths 2..16, 100 steps. The grid brackets both samples' optima at every depth (the unscaled one's falls to
# about 2^-9 at depth 16). CompleteP's optimum sits in a flat valley whose seeds scatter by up to ±0.4 log2 lr
# at depth 16, so it takes two seeds; the unscaled sample's fall (≈ −0.6 per doubling) is so far beyond
# tolerance that one seed decides it (benchmarks/depth_sweep.py measures both).
SWEEP_DEFAULTS: dict[str, Any] = {"widths": [WIDTH], "depths": DEPTHS, "lrs": [2.0**e for e in range(-10, -3)],
                                  "steps": 100, "executor": "processes"}
SWEEP_SEEDS = {"completep": 2, "unscaled": 1}
EPS = 1e-8
PARAMETRIZATIONS: dict[str, tuple[float, float]] = {
    # name: (α of the branch multiplier, α of the learning-rate and ε rules)
    "completep": (1.0, 1.0),
    "depth-mup": (0.5, 0.5),
    "unscaled": (0.0, 1.0),  # no multiplier; the LR of CompleteP's α = 1 row (constant in depth)
    "lr-unscaled": (0.5, 1.0),  # Depth-μP's multiplier with a depth-constant LR
    "overscaled": (1.0, 0.5),  # CompleteP's 1/L multiplier with Depth-μP's LR η/√m_L: updates shrink
}


class ScaledBlock(gpt.Block):
    """A pre-LN block whose two residual branches are multiplied by ``branch_mult``."""

    def __init__(self, config: gpt.GPTConfig, branch_mult: float) -> None:
        super().__init__(config)
        self.branch_mult = branch_mult

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.branch_mult * self.attn(self.ln_1(x))
        return x + self.branch_mult * self.mlp(self.ln_2(x))


class DeepGPT(gpt.GPT):
    """The μP GPT with ``depth`` :class:`ScaledBlock` s; ``alpha`` is the branch exponent, ``lr_alpha`` the
    exponent of its learning-rate and ε rules."""

    def __init__(self, width: int, depth: int, alpha: float, lr_alpha: float) -> None:
        super().__init__(gpt.GPTConfig(width, "mup", n_layer=depth))
        self.depth, self.alpha, self.lr_alpha = depth, alpha, lr_alpha
        self.m_depth = depth / BASE_DEPTH
        mult = self.m_depth ** -alpha
        config = self.config
        self.blocks = nn.ModuleList(ScaledBlock(config, mult) for _ in range(depth))
        self._init_weights()


def build(width: int, depth: int, parametrization: str = "completep") -> DeepGPT:
    """A :class:`DeepGPT` at ``width`` and ``depth`` in ``parametrization`` (see :data:`PARAMETRIZATIONS`)."""
    alpha, lr_alpha = PARAMETRIZATIONS[parametrization]
    return DeepGPT(width, depth, alpha, lr_alpha)


def scales(name: str, p: torch.Tensor, model: DeepGPT) -> tuple[float, float]:
    """(LR factor, ε factor) of parameter ``name``: the module docstring's table."""
    m_n, m_l, a = model.config.m, model.m_depth, model.lr_alpha
    if name.startswith("blocks."):
        if p.dim() == 2:
            return m_n**-1 * m_l ** (a - 1), m_n**-1 * m_l**-a
        return m_l ** (a - 1), 1.0
    is_hidden = p.dim() == 2 and not name.startswith(("lm_head", "wte", "wpe"))
    return (m_n**-1 if is_hidden else 1.0), 1.0


def make_optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam with the per-parameter learning rates and ε of :func:`scales`."""
    if not isinstance(model, DeepGPT):
        raise TypeError(f"expected a DeepGPT, got {type(model).__name__}")
    groups: list[dict[str, Any]] = []
    for name, p in model.named_parameters():
        lr_factor, eps_factor = scales(name, p, model)
        groups.append({"params": [p], "lr": lr * lr_factor, "eps": EPS * eps_factor, "name": name})
    return torch.optim.Adam(groups, lr=lr, eps=EPS)


def make_spec(parametrization: str, name: str, sweep: bool = False) -> Spec:
    """The deep GPT sample in ``parametrization``: ``model(width, depth=BASE_DEPTH)``. With ``sweep``, its
    LR-sweep variant: trained on the stdlib corpus (:mod:`coordscope.sample_models.sweeps`' stream and
    held-out windows) instead of the coord check's fixed batch of random tokens, which holds nothing to
    learn, with :data:`SWEEP_DEFAULTS` for ``coordscope sweep``; its coord-check settings stay the same."""

    def model(width: int, depth: int = BASE_DEPTH) -> nn.Module:
        return build(width, depth, parametrization)

    defaults: dict[str, Any] = {"widths": [WIDTH], "depths": DEPTHS, "steps": 4, "seeds": 2, "lr": gpt.LR}
    return Spec(
        model=model,
        batches=sweeps.batches if sweep else gpt.batches,
        heldout=sweeps.heldout if sweep else None,
        optimizer=make_optimizer,
        defaults={**defaults, "sweep": {**SWEEP_DEFAULTS, "seeds": SWEEP_SEEDS[parametrization]}}
        if sweep else defaults,
        ref=name,
        description=f"deep GPT, {parametrization}, Adam (CompleteP Table 1 rules)"
                    + (", on the stdlib corpus (LR sweeps across depth)" if sweep else ""),
    )


COMPLETEP = make_spec("completep", "gpt-completep")
DEPTH_MUP = make_spec("depth-mup", "gpt-depth-mup")
UNSCALED = make_spec("unscaled", "gpt-depth-unscaled")
LR_UNSCALED = make_spec("lr-unscaled", "gpt-depth-lr-unscaled")
OVERSCALED = make_spec("overscaled", "gpt-depth-overscaled")
COMPLETEP_SWEEP = make_spec("completep", "gpt-completep-sweep", sweep=True)
UNSCALED_SWEEP = make_spec("unscaled", "gpt-depth-unscaled-sweep", sweep=True)
