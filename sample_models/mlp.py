"""A multilayer perceptron in standard (SP), maximal-update (μP) and NTK parametrization, written by hand.

Width scaling follows Tensor Programs V (TP5), Table 3, in the multiplier form the ``mup`` package uses,
with ``m = width / BASE_WIDTH``:

================  ===================  ====================  ===================
                  input weights, bias  hidden weights         readout
================  ===================  ====================  ===================
init std          1/sqrt(fan_in)       1/sqrt(fan_in)        1/sqrt(BASE_WIDTH) , output × 1/m
Adam LR (μP)      η                    η / m                 η
SGD LR (μP)       η · m                η                     η · m
================  ===================  ====================  ===================

SP uses 1/sqrt(fan_in) init, no multiplier and η everywhere. NTK uses 1/sqrt(fan_in) init and SGD with the
learning rate of every weight divided by its fan-in (the NTK parametrization's gradient scale), which
makes hidden features lazy: they move like width^-0.5.

The readout multiplier sits inside :class:`Readout` (as in ``mup.MuReadout``), so the readout module's
own output is the logits the loss sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from coordscope.spec import Spec

BASE_WIDTH = 64
D_IN = 32
CLASSES = 10
BATCH = 64


class Readout(nn.Linear):
    """A linear readout whose output is multiplied by ``output_mult`` (1/m under μP, 1 otherwise)."""

    def __init__(self, width: int, classes: int, output_mult: float) -> None:
        super().__init__(width, classes)
        self.output_mult = output_mult

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.output_mult


class MLP(nn.Module):
    """input → ReLU → (hidden → ReLU) × (depth − 1) → readout."""

    def __init__(self, width: int, depth: int = 3, output_mult: float = 1.0) -> None:
        super().__init__()
        self.width = width
        self.input = nn.Linear(D_IN, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(depth - 1))
        self.readout = Readout(width, CLASSES, output_mult)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.input(x))
        for layer in self.hidden:
            h = torch.relu(layer(h))
        return self.readout(h)


def build(width: int, parametrization: str) -> MLP:
    """An MLP at ``width`` initialised for ``parametrization`` (``sp``, ``mup`` or ``ntk``)."""
    m = width / BASE_WIDTH
    model = MLP(width, output_mult=1.0 / m if parametrization == "mup" else 1.0)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=module.in_features**-0.5)
            nn.init.zeros_(module.bias)
    if parametrization == "mup":
        nn.init.normal_(model.readout.weight, std=BASE_WIDTH**-0.5)
    return model


def param_groups(model: MLP, parametrization: str, optimizer: str, lr: float) -> list[dict[str, Any]]:
    """Per-layer learning rates for ``optimizer`` (``adam`` or ``sgd``) under ``parametrization``."""
    m = model.width / BASE_WIDTH
    groups: list[dict[str, Any]] = []
    for name, p in model.named_parameters():
        layer = name.split(".")[0]
        scale = 1.0
        if parametrization == "mup" and optimizer == "adam":
            scale = 1.0 / m if layer == "hidden" and p.dim() == 2 else 1.0
        elif parametrization == "mup" and optimizer == "sgd":
            scale = 1.0 if layer == "hidden" and p.dim() == 2 else m
        elif parametrization == "ntk":
            scale = 1.0 / p.shape[1] if p.dim() == 2 else 1.0 / model.width
        groups.append({"params": [p], "lr": lr * scale, "name": name})
    return groups


def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Random Gaussian inputs with random labels; seeded by the caller (coordscope seeds every job)."""
    while True:
        yield torch.randn(BATCH, D_IN), torch.randint(0, CLASSES, (BATCH,))


def make_spec(parametrization: str, optimizer: str, lr: float) -> Spec:
    """The MLP sample in one parametrization, trained with ``optimizer`` at base learning rate ``lr``."""

    def model(width: int) -> nn.Module:
        return build(width, parametrization)

    def make_optimizer(net: nn.Module, lr: float) -> torch.optim.Optimizer:
        assert isinstance(net, MLP)
        groups = param_groups(net, parametrization, optimizer, lr)
        if optimizer == "sgd":
            return torch.optim.SGD(groups, lr=lr)
        return torch.optim.Adam(groups, lr=lr)

    return Spec(
        model=model,
        batches=batches,
        optimizer=make_optimizer,
        defaults={"widths": [64, 128, 256, 512], "steps": 5, "seeds": 3, "lr": lr},
        ref=f"mlp-{parametrization}",
        description=f"MLP, {parametrization}, {optimizer}",
    )


SP = make_spec("sp", "adam", 0.01)
MUP = make_spec("mup", "adam", 0.01)
MUP_SGD = make_spec("mup", "sgd", 0.1)
NTK = make_spec("ntk", "sgd", 1.0)
