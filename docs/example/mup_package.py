"""The same model made μP with the `mup` package: MuReadout, set_base_shapes, MuAdam.

    pip install --no-deps mup pyyaml
    coordscope check docs/example/mup_package.py      # PASS
"""

import mup
import torch
from torch import nn

BASE_WIDTH = 64


class Net(nn.Module):
    def __init__(self, width: int, d_in: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.input = nn.Linear(d_in, width)
        self.hidden = nn.Linear(width, width)
        self.readout = mup.MuReadout(width, classes)  # the readout with its 1/m multiplier inside

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(torch.relu(self.hidden(torch.relu(self.input(x)))))


def model(width: int) -> nn.Module:
    net = Net(width)
    mup.set_base_shapes(net, Net(BASE_WIDTH), delta=Net(2 * BASE_WIDTH))  # which dimensions scale
    for module in (net.input, net.hidden):  # re-initialise after set_base_shapes (mup's README)
        nn.init.normal_(module.weight, std=module.in_features**-0.5)
    return net


def batches():
    while True:
        yield torch.randn(64, 32), torch.randint(0, 10, (64,))


def optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    return mup.MuAdam(model.parameters(), lr=lr)  # hidden lr / m from the base shapes


DEFAULTS = {"widths": [64, 128, 256, 512], "steps": 5, "seeds": 3, "lr": 0.01}
