"""Taps: record tensors that are not module outputs, without editing the model.

Attention logits live inside ``F.scaled_dot_product_attention``, where no module hook can see them (the
``mup`` package's coord check cannot). While a recorder is active, :class:`SdpaTap` — a torch function
mode — intercepts every call to it and records the scaled logits ``q·kᵀ·scale`` under
``<calling module>.attn_logits``, then runs the real op untouched; attention written by hand (``matmul``
and ``softmax``) is caught at its softmax over the key axis. :func:`tap` exposes any other
intermediate: it is the identity, and records the tensor only while coordscope is recording.

A torch function mode is not free: while it is active, *every* torch call and every Tensor method goes
through Python (the recorder's own statistics switch it off while they compute). So the mode covers a whole forward
only once, when :func:`coordscope.layers.infer_layers` finds out which modules call SDPA; a job then
enters it only inside those modules (:func:`sdpa_scope`). Measured on the GPT sample at width 512,
the recorder's hooks cost 1.05× plain training without the mode and 1.18× inside a whole-forward one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from coordscope.record import active_recorder
from coordscope.roles import Layer


def tap(name: str, x: torch.Tensor) -> torch.Tensor:
    """Record ``x`` as ``<calling module>.<name>`` (sites ``act``, ``act_delta``, ``act_grad``) when a
    coordscope run is recording; otherwise do nothing. Returns ``x`` unchanged either way."""
    recorder = active_recorder()
    if recorder is not None:
        recorder.emit(name, x)
    return x


def attention_logits(query: torch.Tensor, key: torch.Tensor, scale: float | None = None,
                     is_causal: bool = False, enable_gqa: bool = False) -> torch.Tensor:
    """The pre-softmax logits ``q·kᵀ·scale`` that ``F.scaled_dot_product_attention`` computes, with its
    default scale 1/√d; causally masked entries are left out (they never reach the softmax)."""
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        key = key.repeat_interleave(query.shape[-3] // key.shape[-3], dim=-3)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    logits = torch.matmul(query, key.transpose(-2, -1)).mul_(scale)
    if is_causal:  # a gather of known size: masked_select would sync a GPU
        rows, cols = logits.shape[-2:]
        flat = logits.reshape(*logits.shape[:-2], rows * cols)
        logits = flat.index_select(-1, _causal_entries(rows, cols, logits.device))
    return logits


_CAUSAL: dict[tuple[int, int, torch.device], torch.Tensor] = {}


def _causal_entries(rows: int, cols: int, device: torch.device) -> torch.Tensor:
    """Flat positions (row × cols + column) of the entries a causal mask keeps (bottom-right aligned, as
    SDPA's), in row-major order; cached, since every step asks again for the same shapes. Why flat: an
    ``index_select`` of them took 6 µs where indexing by rows and columns took 42 (8 × 8 heads of 16 tokens)."""
    key = (rows, cols, device)
    if key not in _CAUSAL:
        index = torch.tril_indices(rows, cols, offset=cols - rows, device=device)
        _CAUSAL[key] = index[0] * cols + index[1]
    return _CAUSAL[key]


_SDPA_ARGS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")


_SOFTMAXES = (F.softmax, torch.softmax, torch.Tensor.softmax)
MASKED = -1e4
"""Logits at or below this (an additive mask's -inf or dtype minimum) never reach the softmax's output."""


def softmax_attention_logits(x: torch.Tensor, dim: Any) -> torch.Tensor | None:
    """The input of a softmax, when it is attention written by hand (``matmul`` + ``softmax``, Hugging
    Face's ``attn_implementation="eager"``): a tensor of rank ≥ 3 normalised over its last axis, the key
    axis, with as many queries as keys (self-attention). Masked entries (additive masks put -inf or the
    dtype's minimum there) are set to 0, so they count as nothing: the fraction of masked entries is the
    same at every width, so it does not move a slope. Any other softmax (a classifier's) gives None."""
    if not (isinstance(x, torch.Tensor) and x.dim() >= 3 and x.is_floating_point()):
        return None
    if dim not in (-1, x.dim() - 1) or x.shape[-1] != x.shape[-2]:
        return None
    return torch.where(torch.isfinite(x) & (x > MASKED), x, torch.zeros((), dtype=x.dtype, device=x.device))


class SdpaTap(TorchFunctionMode):
    """Records attention logits while active: those of every ``F.scaled_dot_product_attention`` call, and
    the input of every softmax that normalises self-attention scores over the key axis
    (:func:`softmax_attention_logits`), so attention written with ``matmul`` + ``softmax`` is seen too."""

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if func is not F.scaled_dot_product_attention and func not in _SOFTMAXES:
            return func(*args, **kwargs)  # most calls: nothing to look up
        recorder = active_recorder()
        if recorder is not None and func is F.scaled_dot_product_attention:
            bound = dict(zip(_SDPA_ARGS, args, strict=False)) | kwargs
            with torch.no_grad():
                logits = attention_logits(bound["query"], bound["key"], bound.get("scale"),
                                          bool(bound.get("is_causal", False)), bool(bound.get("enable_gqa", False)))
            recorder.emit("attn_logits", logits)
        elif recorder is not None and func in _SOFTMAXES and args:
            with torch.no_grad():
                scores = softmax_attention_logits(args[0], kwargs.get("dim", args[1] if len(args) > 1 else None))
            if scores is not None:
                recorder.emit("attn_logits", scores)
        return func(*args, **kwargs)


def sdpa_callers(layers: Mapping[str, Layer]) -> set[str]:
    """The modules whose forward called SDPA when the layers were inferred: the owners of the recorded
    ``<module>.attn_logits`` taps (``""``, the model itself, for a call outside any submodule)."""
    callers = set()
    for name, layer in layers.items():
        if layer.module == "tap" and layer.role == "attn_logits":
            owner, _, _ = re.sub(r"#\d+$", "", name).rpartition(".")
            callers.add(owner)
    return callers


@contextmanager
def sdpa_scope(model: nn.Module, callers: set[str]) -> Iterator[None]:
    """While inside, :class:`SdpaTap` is active during the forward of each module in ``callers`` and
    nowhere else. A name ``model`` does not have (the model changed between widths) falls back to the
    whole forward, so no logits are ever missed; no callers, no hooks."""
    modules = dict(model.named_modules())
    targets = [modules[name] for name in callers if name in modules]
    if any(name not in modules for name in callers):
        targets = [model]
    active: list[SdpaTap] = []

    def enter(module: nn.Module, args: Any) -> None:
        active.append(SdpaTap())
        active[-1].__enter__()

    def leave(module: nn.Module, args: Any, output: Any) -> None:
        if active:
            active.pop().__exit__(None, None, None)

    hooks: list[Callable[[], None]] = []
    try:
        for module in targets:
            hooks.append(module.register_forward_pre_hook(enter).remove)
            # prepended: the mode is left before the recorder's own hooks see this module's output
            hooks.append(module.register_forward_hook(leave, prepend=True, always_call=True).remove)
        yield
    finally:
        for remove in hooks:
            remove()
        while active:
            active.pop().__exit__(None, None, None)
