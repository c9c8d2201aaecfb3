"""A one-block transformer whose FFN size, head count and expert count are sized on their own, for dimension
sweeps (``coordscope check dims-mup --dim d_ff``, docs/dimensions.md).

``model(width, d_ff=…, n_heads=…, n_experts=…)``: the width (d_model) stays fixed while one of the others grows.
The head size is fixed (:data:`HEAD_DIM`), so more heads means a wider attention; ``n_experts = 0`` is a dense
FFN, more is a mixture of ``n_experts`` FFNs with top-:data:`TOP_K` routing.

What μP asks when only one of these grows follows from the shapes alone (TP5 Table 3, with that dimension as
n): a matrix whose fan-out grows is *input-like* (the FFN's ``c_fc``, the attention's ``q, k, v``), one whose
fan-in grows is *output-like* (``c_proj`` of the FFN or the attention, which sums over the grown dimension).
Under Adam, with ``m = size / base``:

=================  ===========================  =========================================
                   input-like                   output-like (``c_proj``)
=================  ===========================  =========================================
init std           1/√fan_in                    1/√fan_in · m^-½  (variance ∝ 1/fan_in²)
Adam LR            η                            η / m
=================  ===========================  =========================================

``sp`` leaves both at their base values (1/√fan_in, η), as plain PyTorch code does: the output of ``c_proj``
then changes like m after a step. The mixture renormalises its gates over the chosen experts (``mup``, as
Mixtral does) or takes them from a softmax over *all* experts (``sp``, as the Switch Transformer does), whose
top gates shrink like 1/n_experts — the mixture's output vanishes as experts are added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from coordscope.sample_models import gpt
from coordscope.spec import Spec

WIDTH = 64
HEAD_DIM = 16
TOP_K = 2
BASE = {"d_ff": 64, "n_heads": 2, "n_experts": 2}  # sizes at which μP and SP coincide
DIMENSIONS = {"d_ff": [64, 128, 256, 512], "n_heads": [2, 4, 8, 16], "n_experts": [2, 4, 8, 16]}


@dataclass(frozen=True)
class Config:
    width: int
    d_ff: int = 128
    n_heads: int = 2
    n_experts: int = 0
    mup: bool = True

    def m(self, dim: str) -> float:
        """How many times its base size the dimension ``dim`` is (1 in SP: nothing is rescaled)."""
        return getattr(self, dim) / BASE[dim] if self.mup else 1.0


def readout_like(layer: nn.Linear, m: float) -> nn.Linear:
    """Initialise a matrix whose fan-in grows as μP's readout: variance 1/(fan_in · m), ∝ 1/fan_in²."""
    nn.init.normal_(layer.weight, std=(layer.in_features * m) ** -0.5)
    return layer


class Attention(nn.Module):
    """Causal self-attention with ``n_heads`` heads of size :data:`HEAD_DIM`."""

    def __init__(self, c: Config) -> None:
        super().__init__()
        self.n_heads = c.n_heads
        self.qkv = nn.Linear(c.width, 3 * c.n_heads * HEAD_DIM, bias=False)
        nn.init.normal_(self.qkv.weight, std=c.width**-0.5)
        self.c_proj = readout_like(nn.Linear(c.n_heads * HEAD_DIM, c.width, bias=False), c.m("n_heads"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = (z.view(b, t, self.n_heads, HEAD_DIM).transpose(1, 2) for z in self.qkv(x).chunk(3, dim=-1))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, -1))


class FFN(nn.Module):
    """``c_proj(gelu(c_fc(x)))`` with a hidden size ``d_ff``."""

    def __init__(self, c: Config) -> None:
        super().__init__()
        self.c_fc = nn.Linear(c.width, c.d_ff, bias=False)
        nn.init.normal_(self.c_fc.weight, std=c.width**-0.5)
        self.act = nn.GELU()
        self.c_proj = readout_like(nn.Linear(c.d_ff, c.width, bias=False), c.m("d_ff"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))


class MoE(nn.Module):
    """``n_experts`` FFNs of size ``d_ff``, each token sent to the :data:`TOP_K` its router scores highest.

    Every expert runs on every token (the sizes here are tiny) and the chosen ones are gathered: readable,
    and the same numbers as a dispatching implementation."""

    def __init__(self, c: Config) -> None:
        super().__init__()
        self.renormalise = c.mup
        self.router = nn.Linear(c.width, c.n_experts, bias=False)
        nn.init.normal_(self.router.weight, std=c.width**-0.5)
        self.w_in = nn.Parameter(torch.randn(c.n_experts, c.d_ff, c.width) * c.width**-0.5)
        self.w_out = nn.Parameter(torch.randn(c.n_experts, c.width, c.d_ff) * c.d_ff**-0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.router(x)  # (B, T, E)
        if self.renormalise:
            top, chosen = scores.topk(TOP_K, dim=-1)
            gates = top.softmax(dim=-1)
        else:
            gates, chosen = scores.softmax(dim=-1).topk(TOP_K, dim=-1)
        hidden = F.gelu(torch.einsum("btd,efd->btef", x, self.w_in))
        outputs = torch.einsum("btef,edf->bted", hidden, self.w_out)  # (B, T, E, width)
        picked = outputs.gather(2, chosen[..., None].expand(*chosen.shape, x.shape[-1]))
        return (gates[..., None] * picked).sum(dim=2)


class Model(nn.Module):
    """Embeddings → one pre-LN block (attention, then the FFN or the mixture) → LayerNorm → readout."""

    def __init__(self, c: Config) -> None:
        super().__init__()
        self.config = c
        self.wte = nn.Embedding(gpt.VOCAB, c.width)
        self.wpe = nn.Embedding(gpt.SEQ_LEN, c.width)
        self.ln_1, self.ln_2, self.ln_f = nn.LayerNorm(c.width), nn.LayerNorm(c.width), nn.LayerNorm(c.width)
        self.attn = Attention(c)
        self.mlp: nn.Module = MoE(c) if c.n_experts else FFN(c)
        self.lm_head = nn.Linear(c.width, gpt.VOCAB, bias=False)
        nn.init.normal_(self.lm_head.weight, std=gpt.READOUT_STD)
        for emb in (self.wte, self.wpe):
            nn.init.normal_(emb.weight, std=1.0)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return self.lm_head(self.ln_f(x))


def optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam; each ``c_proj`` (output-like in the dimension it sums over) at η / m of that dimension."""
    if not isinstance(model, Model):
        raise TypeError(f"expected a dims Model, got {type(model).__name__}")
    c = model.config
    scale = {"attn.c_proj.weight": 1 / c.m("n_heads"), "mlp.c_proj.weight": 1 / c.m("d_ff")}
    return torch.optim.Adam([{"params": [p], "lr": lr * scale.get(name, 1.0)}
                             for name, p in model.named_parameters()], lr=lr)


def make_spec(parametrization: str) -> Spec:
    """The sample in ``mup`` or ``sp``; ``DIMENSIONS`` as declared above, one width (:data:`WIDTH`)."""
    def model(width: int, d_ff: int = 128, n_heads: int = 2, n_experts: int = 0) -> nn.Module:
        return Model(Config(width, d_ff, n_heads, n_experts, parametrization == "mup"))

    # Without --dim the FFN size is swept: the sample is about dimensions, not width.
    defaults: dict[str, Any] = {"dim": "d_ff", "widths": [WIDTH], "steps": 5, "seeds": 3, "lr": gpt.LR}
    return Spec(model=model, batches=gpt.batches, optimizer=optimizer, defaults=defaults,
                dimensions={k: tuple(v) for k, v in DIMENSIONS.items()}, ref=f"dims-{parametrization}",
                description=f"one-block transformer sized by d_ff / n_heads / n_experts, {parametrization}, Adam")


MUP = make_spec("mup")
SP = make_spec("sp")
