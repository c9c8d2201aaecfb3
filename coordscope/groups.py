"""The hyperparameters an optimizer's parameter groups give each parameter — lr, weight decay, ε — read from
the optimizer itself, as ``meta.json`` records them for every width.

Only reading, with torch alone: judging how they scale (:mod:`coordscope.hyperparams`) needs polars, which a
recording process and ``coordscope run`` have no other use for (its import is 0.2 s and 23 MB).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

KEYS: tuple[str, ...] = ("lr", "weight_decay", "eps")
Hyperparameters = dict[str, dict[str, float]]  # parameter name → {"lr": …, "weight_decay": …, "eps": …}


def collect(model: nn.Module, optimizer: torch.optim.Optimizer) -> Hyperparameters:
    """The numeric lr, weight_decay and eps of the parameter group of every named parameter."""
    group_of = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    out: Hyperparameters = {}
    for name, p in model.named_parameters():
        group = group_of.get(id(p))
        if group is None:
            continue
        values = {key: float(group[key]) for key in KEYS
                  if isinstance(group.get(key), (int, float)) and not isinstance(group.get(key), bool)}
        out[name] = values
    return out


def widths_table(per_width: Sequence[tuple[int, Hyperparameters]]) -> dict[str, Hyperparameters]:
    """The ``meta.json`` form: width (as text, a JSON key) → parameter → values."""
    return {str(width): params for width, params in per_width}
