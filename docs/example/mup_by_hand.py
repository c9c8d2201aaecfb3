"""The same model made μP by hand (Tensor Programs V, Table 3, for Adam) — four changes, marked (1)–(4).

    coordscope check docs/example/mup_by_hand.py      # PASS
"""

import torch
from torch import nn

BASE_WIDTH = 64  # (1) a base width: at it, the μP model *is* the SP model, so tuned hyperparameters carry over


class Net(nn.Module):
    def __init__(self, width: int, d_in: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.width_mult = width / BASE_WIDTH  # (2) the width multiplier m
        self.input = nn.Linear(d_in, width)
        self.hidden = nn.Linear(width, width)
        self.readout = nn.Linear(width, classes)
        nn.init.normal_(self.readout.weight, std=BASE_WIDTH**-0.5)  # (3) readout init fixed at the base width…

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.hidden(torch.relu(self.input(x))))
        return self.readout(h) / self.width_mult  # (3) … and its output divided by m


def model(width: int) -> nn.Module:
    return Net(width)


def batches():
    while True:
        yield torch.randn(64, 32), torch.randint(0, 10, (64,))


def optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    # (4) Adam: hidden (width × width) matrices get lr / m; everything else keeps lr
    hidden = [model.hidden.weight]
    rest = [p for name, p in model.named_parameters() if name != "hidden.weight"]
    return torch.optim.Adam([{"params": hidden, "lr": lr / model.width_mult}, {"params": rest}], lr=lr)


DEFAULTS = {"widths": [64, 128, 256, 512], "steps": 5, "seeds": 3, "lr": 0.01}
