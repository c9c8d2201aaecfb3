"""A μP language model shaped the way Hugging Face models are, to show coordscope takes such models as they are.

What makes it "HF-style", each a thing a coordinate-check tool has to cope with:

* ``forward(input_ids, labels)`` takes a **dict batch** (``model(**batch)``) and returns an object with
  ``.loss`` and ``.logits`` — no ``loss()`` in the spec; coordscope uses ``.loss`` and records ``.logits``
  as ``<output>``;
* **tied input/output embeddings**: ``lm_head.weight is wte.weight``, as ``tie_weights()`` does (the
  readout keeps its own bias, as BERT's does);
* a **registered buffer** (``positions``) and a **frozen parameter** (a sinusoidal position table with
  ``requires_grad=False``), which are recorded as they are and never trained.

μP with tied embeddings follows ``mup.MuSharedReadout``: the shared matrix has one dimension that grows, so
Adam trains it at the base LR η (like an embedding), and the readout multiplies its output by 1/m inside
the module, so ``lm_head``'s recorded output is the logits the loss sees. The
hidden blocks are :class:`coordscope.sample_models.gpt.Block` with μP's 1/d attention, at LR η/m. The
embedding starts at std :data:`EMBED_STD` (any width-independent constant is μP): small, because as the
readout it must not let the random initial matrix dominate the logits' change (see ``gpt.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from coordscope.sample_models import gpt
from coordscope.sample_models.mlp import Readout
from coordscope.spec import Spec

N_LAYER = 1
EMBED_STD = 0.02  # GPT-2's embedding std; see the module docstring for why small
LR = gpt.LR


@dataclass
class CausalLMOutput:
    """What Hugging Face causal LMs return: the loss (when labels are given) and the logits."""

    loss: torch.Tensor | None
    logits: torch.Tensor


def sinusoidal(length: int, width: int) -> torch.Tensor:
    """The fixed position table of "Attention is all you need": entries in [-1, 1] at every width."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    table = torch.zeros(length, width)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


class TiedLM(nn.Module):
    """Token embedding + frozen sinusoidal positions → ``N_LAYER`` GPT blocks → LayerNorm → tied readout."""

    positions: torch.Tensor

    def __init__(self, config: gpt.GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab, config.width)
        self.pos = nn.Parameter(sinusoidal(config.seq_len, config.width), requires_grad=False)
        self.register_buffer("positions", torch.arange(config.seq_len))
        self.blocks = nn.ModuleList(gpt.Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.width)
        self.lm_head = Readout(config.width, config.vocab, config.output_mult)
        self.lm_head.weight = self.wte.weight  # tied, as Hugging Face's tie_weights() does
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=module.in_features**-0.5)
        nn.init.normal_(self.wte.weight, std=EMBED_STD)
        nn.init.zeros_(self.lm_head.bias)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> CausalLMOutput:
        x = self.wte(input_ids) + self.pos[self.positions[: input_ids.shape[1]]]
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return CausalLMOutput(loss, logits)


def build(width: int) -> TiedLM:
    """The model at ``width``, in μP."""
    return TiedLM(gpt.GPTConfig(width, "mup", n_layer=N_LAYER))


def make_optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam over the trainable parameters: η / m for the blocks' matrices, η for the rest (the frozen
    position table is left out; the tied matrix appears once)."""
    if not isinstance(model, TiedLM):
        raise TypeError(f"expected a TiedLM, got {type(model).__name__}")
    groups = [{"params": [p], "lr": lr * gpt.lr_scale(name, p, model.config), "name": name}
              for name, p in model.named_parameters() if p.requires_grad]
    return torch.optim.Adam(groups, lr=lr)


def batches() -> Iterator[dict[str, torch.Tensor]]:
    """The GPT sample's sequences as Hugging Face batches: ``{"input_ids", "labels"}``."""
    for inputs, targets in gpt.batches():
        yield {"input_ids": inputs, "labels": targets}


MUP = Spec(
    model=build,
    batches=batches,
    optimizer=make_optimizer,
    defaults={"widths": [64, 128, 256, 512], "steps": 5, "seeds": 3, "lr": LR},
    ref="hf-tied-mup",
    description="HF-style LM: dict batch, returns .loss, tied embeddings, buffer, frozen parameter; μP",
)
