"""The probe API: how a statistic of a recorded tensor is defined, named and selected.

A probe is a function ``probe(x, ctx) -> Tensor`` returning a 0-d tensor. It is called on the tensor's
own device, with ``x`` detached and already in float32, and must not move data to the host: the recorder
stacks every probe's result for the whole model and moves them once per step. ``ctx`` says what ``x`` is
(:class:`ProbeContext`). Register a probe with :func:`register_probe`; runs select probes by name
(:mod:`coordscope.probe_select`). The built-in probes (:mod:`coordscope.probes`) are written against this
module alone, like any user's.

Example::

    from coordscope import register_probe

    @register_probe("rms_per_token")
    def rms_per_token(x, ctx):
        return x.pow(2).mean(dim=-1).sqrt().mean()
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass(frozen=True)
class ProbeContext:
    """What a probed tensor is.

    ``name``: module path, parameter path, tap name, ``<output>`` or ``<loss>``. ``site``: one of
    :data:`coordscope.store.SITES`. ``shape``: the tensor's shape. ``scaling_dims``: for each dimension,
    whether it grows with width (None where coordscope could not tell). ``width``, ``step``: where we are.
    """

    name: str
    site: str
    shape: tuple[int, ...]
    scaling_dims: tuple[bool, ...] | None
    width: int
    step: int


class Probe(Protocol):
    """A statistic of one tensor: returns a 0-d float tensor on the tensor's device."""

    def __call__(self, x: torch.Tensor, ctx: ProbeContext) -> torch.Tensor: ...


_REGISTRY: dict[str, Probe] = {}


def register_probe(name: str) -> Callable[[Probe], Probe]:
    """Decorator: make ``fn`` selectable as ``name`` (``--probes name``)."""

    def decorate(fn: Probe) -> Probe:
        _REGISTRY[name] = fn
        return fn

    return decorate


def registry() -> dict[str, Probe]:
    """The probes registered so far, by name."""
    return dict(_REGISTRY)
