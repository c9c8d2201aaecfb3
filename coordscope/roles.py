"""μP roles: which dimensions of a tensor grow with width, and the role that gives each recorded name.

μP treats a weight by how its two dimensions scale: *input-like* (only fan-out grows: embeddings, the
first layer), *hidden* (both), *output-like* (only fan-in: the readout), *vector-like* (a 1-D parameter
that grows: biases, norm gains) and *fixed* (nothing grows). These are the pure rules; which dimensions
grow is measured by :mod:`coordscope.layers`, which builds the model at two widths and compares shapes
(or reads the ``mup`` package's ``infshape`` where ``set_base_shapes`` put one).

An activation takes the role of the module that produced it (the role of its ``weight``), else ``hidden``
when one of its dimensions grows, else ``fixed``; the model's own output is ``output``; tap names ending in
``attn_logits`` are ``attn_logits``; the loss is ``loss``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from coordscope.outputs import LOSS, OUTPUT

ROLES: tuple[str, ...] = ("input", "hidden", "output", "vector", "fixed", "attn_logits", "loss")


@dataclass(frozen=True)
class Layer:
    """What a recorded name is: its role, the module class, its shape at the smallest width, and for each
    dimension whether it grows with width.

    ``rescaled`` marks an output-role module whose output is not what the model returns: the model's
    ``forward`` multiplies it afterwards (``logits = self.lm_head(h) / scale``, as IBM Granite, MiniCPM and
    Cerebras-style μP do). μP constrains what reaches the loss, ``<output>``; such a module's raw output is
    recorded and drawn but not judged as the output.
    """

    role: str
    module: str
    shape: tuple[int, ...]
    scaling_dims: tuple[bool, ...]
    rescaled: bool = False

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "shape": list(self.shape), "scaling_dims": list(self.scaling_dims)}

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Layer:
        return Layer(str(data["role"]), str(data.get("module", "")), tuple(data.get("shape", ())),
                     tuple(data.get("scaling_dims", ())), bool(data.get("rescaled", False)))


def scaling_dims(small: tuple[int, ...], large: tuple[int, ...]) -> tuple[bool, ...]:
    """For each dimension of a tensor seen at two widths, whether it grew (nothing grows when the rank
    changed: the shapes are not comparable)."""
    if len(small) != len(large):
        return tuple(False for _ in small)
    return tuple(x != y for x, y in zip(small, large, strict=True))


def infshape_scaling(p: torch.Tensor) -> tuple[bool, ...] | None:
    """Scaling dims from the ``mup`` package's ``p.infshape``, when ``set_base_shapes`` put one there."""
    infshape = getattr(p, "infshape", None)
    if infshape is None:
        return None
    try:
        return tuple(bool(dim.isinf()) for dim in infshape)
    except (TypeError, AttributeError):
        return None


def weight_role(scaling: tuple[bool, ...], module: nn.Module | None = None) -> str:
    """The μP role of a parameter from which of its dimensions grow ([fan_out, fan_in, …] convention;
    ``nn.Embedding`` stores [vocab, width], i.e. fan-in first)."""
    if len(scaling) == 0:
        return "fixed"
    if len(scaling) == 1:
        return "vector" if scaling[0] else "fixed"
    fan_out, fan_in = scaling[0], scaling[1]
    if isinstance(module, nn.Embedding):
        fan_out, fan_in = fan_in, fan_out
    if fan_out and fan_in:
        return "hidden"
    if fan_out:
        return "input"
    if fan_in:
        return "output"
    return "fixed"


def activation_role(module: nn.Module | None, scaling: tuple[bool, ...], param_roles: Mapping[str, str],
                    module_name: str) -> str:
    """An activation's role: that of its module's ``weight`` if it has one, else by its own shape."""
    if module is not None:
        weight_name = f"{module_name}.weight" if module_name else "weight"
        role = param_roles.get(weight_name)
        if role in ("input", "hidden", "output"):
            return role
    return "hidden" if any(scaling) else "fixed"


def recorded_role(name: str, module_type: str, scaling: tuple[bool, ...], module: nn.Module | None,
                  param_roles: Mapping[str, str]) -> str:
    """The role of a recorded activation, tap, ``<output>`` or ``<loss>``."""
    if name == OUTPUT:
        return "output"
    if name == LOSS:
        return "loss"
    if module_type == "tap":
        # A module that computes attention more than once records attn_logits, attn_logits#1, …
        tap_name = re.sub(r"#\d+$", "", name)
        return "attn_logits" if tap_name.endswith("attn_logits") else ("hidden" if any(scaling) else "fixed")
    return activation_role(module, scaling, param_roles, module_owner(name))


def module_owner(name: str) -> str:
    """The module path of a recorded activation name (``blocks.0.attn#1[0]`` → ``blocks.0.attn``)."""
    return name.split("[")[0].split("#")[0]
