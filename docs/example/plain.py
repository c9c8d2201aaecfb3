"""A plain PyTorch model, as most people write it: standard parametrization (SP), one Adam learning rate.

    coordscope check docs/example/plain.py      # FAIL: the readout and hidden layers grow with width
"""

import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, width: int, d_in: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.input = nn.Linear(d_in, width)
        self.hidden = nn.Linear(width, width)
        self.readout = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(torch.relu(self.hidden(torch.relu(self.input(x)))))


def model(width: int) -> nn.Module:
    return Net(width)


def batches():
    while True:
        yield torch.randn(64, 32), torch.randint(0, 10, (64,))


def optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=lr)


DEFAULTS = {"widths": [64, 128, 256, 512], "steps": 5, "seeds": 3, "lr": 0.01}
