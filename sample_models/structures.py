"""μP written the way other people write it: the GPT sample (:mod:`coordscope.sample_models.gpt`) rebuilt in
the structures third-party code uses, so that coordscope's verdicts are held against them.

Each variant keeps the GPT sample's μP recipe (TP5 Table 3: 1/fan_in hidden init, hidden Adam LR η/m,
1/d attention, readout output × 1/m) and changes only *where* things happen:

``forward_mult``   the readout is a plain ``nn.Linear``; the model's ``forward`` multiplies its output by
                   1/m afterwards (``logits = self.lm_head(h) * mult``, as IBM Granite, MiniCPM and
                   Cerebras-style μP do), so the readout module's raw output is not the model's output
``zero_readout``   the readout initialised at zero (the ``mup`` package's examples): no hidden layer gets a
                   gradient at the first step, so a one-step check cannot judge them
``parent_attn``    the blocks' projections live in a ``ModuleDict`` and the *model's* ``forward`` runs
                   attention for every block, so one module calls ``scaled_dot_product_attention`` several
                   times (``attn_logits``, ``attn_logits#1``)
``eager_attn``     attention written with ``matmul`` + a causal mask + ``softmax`` (nanoGPT's slow path,
                   Hugging Face's ``attn_implementation="eager"``) instead of SDPA

With ``sqrt_d`` the attention uses 1/√d (a μP bug coordscope must flag); with ``plain_adam`` every
parameter gets the base learning rate (another).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from coordscope.sample_models import gpt
from coordscope.spec import Spec

STRUCTURES = ("forward_mult", "zero_readout", "parent_attn", "eager_attn")


class EagerAttention(gpt.CausalSelfAttention):
    """The GPT sample's attention, computed by hand: (q·kᵀ)·scale, -inf above the diagonal, softmax, ·v."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2)
                   for z in self.c_attn(x).split(d, dim=2))
        scores = (q @ k.transpose(-2, -1)) * self.scale
        future = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        weights = F.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
        return self.c_proj((weights @ v).transpose(1, 2).reshape(b, t, d))


class StructuredGPT(gpt.GPT):
    """The GPT sample with one of :data:`STRUCTURES` (see the module docstring)."""

    def __init__(self, config: gpt.GPTConfig, structure: str) -> None:
        if structure not in STRUCTURES:
            raise ValueError(f"structure must be one of {STRUCTURES}, got {structure!r}")
        super().__init__(config)
        self.structure = structure
        if structure == "forward_mult":
            self.lm_head = gpt.Readout(config.width, config.vocab, output_mult=1.0)  # a plain Linear: no multiplier
            nn.init.normal_(self.lm_head.weight, std=gpt.READOUT_STD if config.mup else config.width**-0.5)
        elif structure == "zero_readout":
            nn.init.zeros_(self.lm_head.weight)
            nn.init.zeros_(self.lm_head.bias)
        elif structure == "eager_attn":
            for block in self._blocks():
                attention = EagerAttention(config)
                attention.load_state_dict(block.attn.state_dict())
                block.attn = attention
        elif structure == "parent_attn":
            # The projections move into a ModuleDict of the model; the blocks keep their norms and MLPs.
            self.attn = nn.ModuleDict({str(i): block.attn for i, block in enumerate(self._blocks())})
            for block in self._blocks():
                del block.attn

    def _blocks(self) -> list[gpt.Block]:
        return [block for block in self.blocks if isinstance(block, gpt.Block)]

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if self.structure == "forward_mult":
            h = self.wte(idx) + self.wpe(self.positions[: idx.shape[1]])
            for block in self.blocks:
                h = block(h)
            return self.lm_head(self.ln_f(h)) * self.config.output_mult
        if self.structure != "parent_attn":
            return super().forward(idx)
        x = self.wte(idx) + self.wpe(self.positions[: idx.shape[1]])
        for i, block in enumerate(self._blocks()):
            attention = self.attn[str(i)]
            assert isinstance(attention, gpt.CausalSelfAttention)
            b, t, d = x.shape
            q, k, v = (z.view(b, t, attention.n_head, d // attention.n_head).transpose(1, 2)
                       for z in attention.c_attn(block.ln_1(x)).split(d, dim=2))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=attention.scale)
            x = x + attention.c_proj(y.transpose(1, 2).reshape(b, t, d))
            x = x + block.mlp(block.ln_2(x))
        return self.lm_head(self.ln_f(x))


def make_spec(structure: str, bugs: tuple[str, ...] = ()) -> Spec:
    """The μP GPT in ``structure``, with the GPT sample's planted ``bugs`` (``attn_sqrt_d``, ``plain_adam``)."""

    def model(width: int) -> nn.Module:
        return StructuredGPT(gpt.GPTConfig(width, "mup", frozenset(bugs)), structure)

    def optimizer(net: nn.Module, lr: float) -> torch.optim.Optimizer:
        assert isinstance(net, StructuredGPT)
        groups = [{"params": [p], "lr": lr * gpt.lr_scale(name, p, net.config)} for name, p in net.named_parameters()]
        return torch.optim.Adam(groups, lr=lr)

    name = f"gpt-{structure.replace('_', '-')}" + "".join(f"-{b.replace('_', '-')}" for b in bugs)
    return Spec(model=model, batches=gpt.batches, optimizer=optimizer, ref=name,
                defaults={"widths": [64, 128, 256, 512], "steps": 5, "seeds": 3, "lr": gpt.LR},
                description=f"GPT, μP, {structure}" + (f", bug: {', '.join(bugs)}" if bugs else ""))


FORWARD_MULT = make_spec("forward_mult")
ZERO_READOUT = make_spec("zero_readout")
ZERO_READOUT_PLAIN_ADAM = make_spec("zero_readout", ("plain_adam",))
PARENT_ATTN = make_spec("parent_attn")
EAGER_ATTN = make_spec("eager_attn")
EAGER_ATTN_SQRT_D = make_spec("eager_attn", ("attn_sqrt_d",))
