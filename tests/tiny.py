"""The smallest model with an input, a hidden and an output layer, shared by the recorder's tests:
x → Linear(3, w) → tanh → Linear(w, 2), small enough to recompute by hand."""

from __future__ import annotations

import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.a = nn.Linear(3, width)
        self.act = nn.Tanh()
        self.b = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.act(self.a(x)))


def tiny_batches():
    while True:
        yield torch.randn(5, 3), torch.randn(5, 2)


def mse(model: nn.Module, batch) -> torch.Tensor:
    return nn.functional.mse_loss(model(batch[0]), batch[1])
