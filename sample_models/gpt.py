"""A nanoGPT-style decoder in standard (SP) and maximal-update (μP) parametrization, with planted μP bugs.

Token ids ``(B, T)`` → logits ``(B, T, VOCAB)`` over 128 byte-level ASCII ids. ``N_LAYER`` pre-LN blocks, a
fixed number of heads ``N_HEAD``, so the head dimension ``d_head = width / N_HEAD`` grows with width, and
attention through ``F.scaled_dot_product_attention`` (coordscope records its logits as
``blocks.<i>.attn.attn_logits``). Width scaling follows Tensor Programs V (TP5), Table 3 and App. D.2, in
the multiplier form the ``mup`` package uses, with ``m = width / BASE_WIDTH``:

=================  ==================  ======================  ==========================================
                   embeddings, LN      hidden (attn, MLP)      readout ``lm_head``
=================  ==================  ======================  ==========================================
init std           1 (LN: 1, 0)        1/sqrt(fan_in)          0.1/sqrt(BASE_WIDTH), output × 1/m
Adam LR (μP)       η                   η / m                   η
attention scale    —                   sqrt(d_head_base) / d_head   (1/sqrt(d_head) in SP)
=================  ==================  ======================  ==========================================

The attention scale is TP5's 1/d_head times the constant sqrt(d_head_base), so that at ``BASE_WIDTH`` the
μP model *is* the SP model and a learning rate tuned on either transfers to the other. The readout starts
small (any width-independent constant is μP; zero is ``mup``'s other option) so that, from the first step
on, the logits' change comes from learning the readout rather than from the random initial readout
reading the features' change, a part that shrinks like width^-0.5 and blurs the check at small widths.
SP uses 1/sqrt(fan_in) inits (the readout included), 1/sqrt(d_head) attention, no multiplier and η
everywhere.

Planted bugs (:data:`BUGS`), each a named sample that coordscope must flag, each one line away from μP:

``plain_adam``           every parameter at η: hidden updates grow like width (act_delta slope ≈ +1)
``readout_unscaled``     no 1/m on the readout: logits' change grows like width
``output_mult_twice``    the readout multiplier applied twice (1/m²): logits stop learning (slope ≈ −1)
``attn_sqrt_d``          1/sqrt(d_head) attention in μP: attention logits' change grows like d_head^0.5
``embedding_lr_scaled``  the embeddings' learning rate divided by m, as if they were hidden: they freeze
``constant_std``         GPT-2-style init, std 0.02 everywhere (an SP model): hidden activations at init
                         grow with width
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from coordscope.sample_models.mlp import Readout
from coordscope.spec import Spec

VOCAB = 128
SEQ_LEN = 32
N_LAYER = 2
N_HEAD = 2  # d_head = width/2: with 4 heads (d_head 16..128) the 1/√d bug's signal fell to ≈ +0.35
BASE_WIDTH = 64
READOUT_STD = 0.1 * BASE_WIDTH**-0.5
GPT2_STD = 0.02
ALPHABET = b"ACGT"
CHECK_BATCH = (8, 16)  # (sequences, length) of the coord-check batch
LR = 0.03  # base Adam learning rate of the samples: large enough that 5 steps show a clear signal
BUGS = ("plain_adam", "readout_unscaled", "output_mult_twice", "attn_sqrt_d", "embedding_lr_scaled",
        "constant_std")
PARAMETRIZATIONS = ("sp", "mup")


@dataclass(frozen=True)
class GPTConfig:
    """Everything that decides the model and its learning rates; ``bugs`` is a subset of :data:`BUGS`."""

    width: int
    parametrization: str = "mup"
    bugs: frozenset[str] = field(default_factory=frozenset)
    n_layer: int = N_LAYER
    n_head: int = N_HEAD
    vocab: int = VOCAB
    seq_len: int = SEQ_LEN

    def __post_init__(self) -> None:
        if self.parametrization not in PARAMETRIZATIONS:
            raise ValueError(f"parametrization must be one of {PARAMETRIZATIONS}, got {self.parametrization!r}")
        unknown = set(self.bugs) - set(BUGS)
        if unknown:
            raise ValueError(f"unknown bugs {sorted(unknown)} (known: {', '.join(BUGS)})")
        if self.width % self.n_head:
            raise ValueError(f"width {self.width} is not a multiple of n_head={self.n_head}")

    @property
    def mup(self) -> bool:
        return self.parametrization == "mup"

    @property
    def m(self) -> float:
        """The width multiplier: width / BASE_WIDTH."""
        return self.width / BASE_WIDTH

    @property
    def attn_scale(self) -> float:
        """sqrt(d_head_base)/d_head under μP (TP5's 1/d, equal to SP at the base width); else 1/sqrt(d_head)."""
        d_head = self.width // self.n_head
        if self.mup and "attn_sqrt_d" not in self.bugs:
            return math.sqrt(BASE_WIDTH // self.n_head) / d_head
        return 1.0 / math.sqrt(d_head)

    @property
    def output_mult(self) -> float:
        """The readout multiplier: 1/m under μP (1/m² with ``output_mult_twice``, 1 with ``readout_unscaled``)."""
        if not self.mup or "readout_unscaled" in self.bugs:
            return 1.0
        return 1.0 / self.m**2 if "output_mult_twice" in self.bugs else 1.0 / self.m


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention; the logits are scaled by ``config.attn_scale``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.scale = config.attn_scale
        self.c_attn = nn.Linear(config.width, 3 * config.width, bias=False)
        self.c_proj = nn.Linear(config.width, config.width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2)
                   for z in self.c_attn(x).split(d, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, d))


class MLPBlock(nn.Module):
    """width → 4·width → GELU → width."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width, bias=False)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * width, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.width)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.width)
        self.mlp = MLPBlock(config.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Token and position embeddings → ``n_layer`` blocks → LayerNorm → readout."""

    positions: torch.Tensor

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab, config.width)
        self.wpe = nn.Embedding(config.seq_len, config.width)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.width)
        self.lm_head = Readout(config.width, config.vocab, config.output_mult)
        self.register_buffer("positions", torch.arange(config.seq_len), persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        """The init column of the module docstring's table (PyTorch's defaults differ)."""
        constant = "constant_std" in self.config.bugs
        for module in self.modules():
            if isinstance(module, nn.Linear):
                std = GPT2_STD if constant else module.in_features**-0.5
                nn.init.normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=GPT2_STD if constant else 1.0)
        if self.config.mup:
            nn.init.normal_(self.lm_head.weight, std=READOUT_STD)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(self.positions[: idx.shape[1]])
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def build(width: int, parametrization: str = "mup", bugs: Iterable[str] = ()) -> GPT:
    """A GPT at ``width`` in ``parametrization`` (``sp`` or ``mup``), with the planted ``bugs`` (see :data:`BUGS`)."""
    return GPT(GPTConfig(width, parametrization, frozenset(bugs)))


def lr_scale(name: str, p: torch.Tensor, config: GPTConfig) -> float:
    """The factor on the base learning rate of parameter ``name`` under Adam (the table's Adam row)."""
    if not config.mup or "plain_adam" in config.bugs:
        return 1.0
    if name.startswith(("wte", "wpe")):
        return 1.0 / config.m if "embedding_lr_scaled" in config.bugs else 1.0
    is_hidden = p.dim() == 2 and not name.startswith("lm_head")
    return 1.0 / config.m if is_hidden else 1.0


def param_groups(model: GPT, lr: float) -> list[dict[str, Any]]:
    """One Adam parameter group per trainable parameter, at ``lr`` times its :func:`lr_scale`."""
    return [{"params": [p], "lr": lr * lr_scale(name, p, model.config), "name": name}
            for name, p in model.named_parameters() if p.requires_grad]


def make_optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam with the per-parameter learning rates of :func:`param_groups` (the model knows its parametrization)."""
    if not isinstance(model, GPT):
        raise TypeError(f"expected a GPT, got {type(model).__name__}")
    return torch.optim.Adam(param_groups(model, lr), lr=lr)


def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Random sequences over the four letters of :data:`ALPHABET` and their next tokens, ``CHECK_BATCH``
    = (batch, length); seeded by the caller (coordscope seeds every job).

    Why four letters and not all 128 ids: with a small alphabet the model fits the fixed batch within a
    few steps, so its updates are coherent, as on real text. Uniform noise over 128 ids gives updates
    whose incoherent part shrinks only like width^-0.5, and at widths 64..512 it still hides the
    correlated part that μP is about (attention logits and the readout looked like they vanished).
    """
    alphabet = torch.tensor(list(ALPHABET))
    batch, length = CHECK_BATCH
    while True:
        tokens = alphabet[torch.randint(0, len(alphabet), (batch, length + 1))]
        yield tokens[:, :-1], tokens[:, 1:]



def make_spec(parametrization: str, lr: float = LR, bugs: Iterable[str] = (), name: str = "") -> Spec:
    """The GPT sample in ``parametrization`` with the planted ``bugs``, trained with Adam at base LR ``lr``."""
    frozen = frozenset(bugs)

    def model(width: int) -> nn.Module:
        return build(width, parametrization, frozen)

    return Spec(
        model=model,
        batches=batches,
        optimizer=make_optimizer,
        defaults={"widths": [64, 128, 256, 512], "steps": 5, "seeds": 3, "lr": lr},
        ref=name or f"gpt-{parametrization}",
        description=f"GPT, {parametrization}, Adam" + (f", bug: {', '.join(sorted(frozen))}" if frozen else ""),
    )


SP = make_spec("sp")
MUP = make_spec("mup")
SP_GPT2_INIT = make_spec("sp", bugs=["constant_std"], name="gpt-sp-gpt2-init")
BUG_PLAIN_ADAM = make_spec("mup", bugs=["plain_adam"], name="gpt-bug-plain-adam")
BUG_READOUT_UNSCALED = make_spec("mup", bugs=["readout_unscaled"], name="gpt-bug-readout-unscaled")
BUG_OUTPUT_MULT_TWICE = make_spec("mup", bugs=["output_mult_twice"], name="gpt-bug-output-mult-twice")
BUG_ATTN_SQRT_D = make_spec("mup", bugs=["attn_sqrt_d"], name="gpt-bug-attn-sqrt-d")
BUG_EMBEDDING_LR = make_spec("mup", bugs=["embedding_lr_scaled"], name="gpt-bug-embedding-lr")
