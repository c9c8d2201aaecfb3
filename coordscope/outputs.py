"""Module outputs: which tensors a module (or the model) returned, and under which names they are recorded.

A module may return a tensor, a tuple, a list, a dict or a Hugging Face style output object; the recorder
needs each floating-point tensor inside it under a stable name (:func:`named_tensors`), and the one tensor
that stands for the model's output (:func:`main_output`, recorded as :data:`OUTPUT`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

OUTPUT = "<output>"
"""The recorded name of the model's own output (what reaches the loss)."""
LOSS = "<loss>"
"""The recorded name of the loss."""


def named_tensors(value: Any, name: str) -> list[tuple[str, torch.Tensor]]:
    """The floating-point tensors inside a module output: ``name`` itself, or ``name[i]`` / ``name[key]``
    for tuples, lists and dicts (nested as deep as they go)."""
    if isinstance(value, torch.Tensor):
        return [(name, value)] if value.is_floating_point() or value.is_complex() else []
    out: list[tuple[str, torch.Tensor]] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            out.extend(named_tensors(item, f"{name}[{key}]"))
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            out.extend(named_tensors(item, f"{name}[{i}]"))
    return out


def main_output(value: Any) -> torch.Tensor | None:
    """The tensor recorded as ``<output>``: the output itself, else its ``logits``, else the first
    non-scalar floating tensor inside it. A bare scalar is the loss, not an output."""
    if isinstance(value, torch.Tensor):
        return value if value.dim() > 0 and value.is_floating_point() else None
    logits = value.get("logits") if isinstance(value, Mapping) else getattr(value, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    for _, tensor in named_tensors(value, ""):
        if tensor.dim() > 0:
            return tensor
    return None
