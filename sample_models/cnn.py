"""A small convolutional network in standard (SP) and maximal-update (μP) parametrization, trained with Adam.

Width is the number of channels. A convolution's fan-in is ``in_channels × kernel area``; what decides its
μP role is which of its two channel dimensions grow (the kernel size does not), so the stem is input-like,
the middle convolutions are hidden and the linear readout is output-like. With ``m = width / BASE_WIDTH``:

================  ==================  ======================  ===================================
                  stem conv, biases   hidden convs             readout
================  ==================  ======================  ===================================
init std          1/sqrt(fan_in)      1/sqrt(fan_in)           0.1/sqrt(BASE_WIDTH), output × 1/m
Adam LR (μP)      η                   η / m                    η
================  ==================  ======================  ===================================

SP: 1/sqrt(fan_in) everywhere, no multiplier, η everywhere. The planted bug ``plain_adam`` keeps μP's init
and multiplier but trains every parameter at η, so the hidden convolutions' updates grow with width.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from coordscope.sample_models.mlp import Readout
from coordscope.spec import Spec

BASE_WIDTH = 64
READOUT_STD = 0.1 * BASE_WIDTH**-0.5
IN_CHANNELS = 3
IMAGE = 6
CLASSES = 10
BATCH = 16
DEPTH = 2  # hidden convolutions
LR = 0.001  # clean signal at 5 steps; at 0.01 the μP curves wobble (the fixed batch is fitted too fast)


class CNN(nn.Module):
    """stem conv → ReLU → (conv → ReLU) × DEPTH → global average pool → readout."""

    def __init__(self, width: int, output_mult: float = 1.0) -> None:
        super().__init__()
        self.width = width
        self.stem = nn.Conv2d(IN_CHANNELS, width, 3, padding=1)
        self.stem_act = nn.ReLU()
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(DEPTH))
        self.acts = nn.ModuleList(nn.ReLU() for _ in range(DEPTH))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.readout = Readout(width, CLASSES, output_mult)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem_act(self.stem(x))
        for conv, act in zip(self.convs, self.acts, strict=True):
            h = act(conv(h))
        return self.readout(self.pool(h).flatten(1))


def build(width: int, parametrization: str) -> CNN:
    """A CNN with ``width`` channels initialised for ``parametrization`` (``sp`` or ``mup``)."""
    model = CNN(width, output_mult=BASE_WIDTH / width if parametrization == "mup" else 1.0)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(module.weight, std=module.weight[0].numel() ** -0.5)  # 1/sqrt(fan_in)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    if parametrization == "mup":
        nn.init.normal_(model.readout.weight, std=READOUT_STD)
    return model


def param_groups(model: CNN, parametrization: str, lr: float) -> list[dict[str, Any]]:
    """Adam learning rates: η / m for the hidden convolutions' kernels under μP, η for everything else."""
    m = model.width / BASE_WIDTH
    return [{"params": [p], "lr": lr / m if parametrization == "mup" and name.startswith("convs.")
             and p.dim() == 4 else lr, "name": name}
            for name, p in model.named_parameters()]


def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Random Gaussian images with random labels; seeded by the caller (coordscope seeds every job)."""
    while True:
        yield torch.randn(BATCH, IN_CHANNELS, IMAGE, IMAGE), torch.randint(0, CLASSES, (BATCH,))


def make_spec(parametrization: str, plain_adam: bool = False, lr: float = LR) -> Spec:
    """The CNN sample in ``parametrization``; ``plain_adam`` trains it with one learning rate for all."""
    groups_for = "sp" if plain_adam else parametrization

    def model(width: int) -> nn.Module:
        return build(width, parametrization)

    def make_optimizer(net: nn.Module, lr: float) -> torch.optim.Optimizer:
        if not isinstance(net, CNN):
            raise TypeError(f"expected a CNN, got {type(net).__name__}")
        return torch.optim.Adam(param_groups(net, groups_for, lr), lr=lr)

    return Spec(
        model=model,
        batches=batches,
        optimizer=make_optimizer,
        defaults={"widths": [64, 128, 256, 512], "steps": 5, "seeds": 3, "lr": lr},
        ref="cnn-bug-plain-adam" if plain_adam else f"cnn-{parametrization}",
        description=f"CNN, {parametrization}, Adam" + (" (plain: one LR for all)" if plain_adam else ""),
    )


SP = make_spec("sp")
MUP = make_spec("mup")
BUG_PLAIN_ADAM = make_spec("mup", plain_adam=True)
