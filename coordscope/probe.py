"""The probe API: how a statistic of a recorded tensor is defined, named and selected.

A probe is a function ``probe(x, ctx) -> Tensor | None`` returning a 0-d tensor. It is called on the
tensor's own device, with ``x`` detached and already in float32, and must not move data to the host: the
recorder stacks every probe's result for the whole model and moves them once per step. ``ctx`` says what
``x`` is (:class:`ProbeContext`). A probe that has no meaning for a tensor (an operator norm of a bias)
returns None, and no row is written for it; ``register_probe(name, sites=...)`` says at once which sites a
probe applies to, so that it is not even called elsewhere (and the recorder keeps its cheaper sampled
measurements for the sites no other probe needs whole). Register a probe with :func:`register_probe`; runs
select probes by name (:mod:`coordscope.probe_select`). The built-in probes (:mod:`coordscope.probes`) are
written against this module alone, like any user's.

Example::

    from coordscope import register_probe

    @register_probe("rms_per_token")
    def rms_per_token(x, ctx):
        return x.pow(2).mean(dim=-1).sqrt().mean()
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch


@dataclass(frozen=True)
class ProbeContext:
    """What a probed tensor is.

    ``name``: module path, parameter path, tap name, ``<output>`` or ``<loss>``. ``site``: one of
    :data:`coordscope.store.SITES`. ``shape``: the tensor's shape. ``scaling_dims``: for each dimension,
    whether it grows with width (None where coordscope could not tell). ``width``, ``step``: where we are.
    ``state``: a dict the probe may keep values in from one step to the next, one per tensor name, site
    and probe within one recording (empty at the first call): what an iterative estimate starts from
    (``spectral`` warm-starts its power iteration there).
    """

    name: str
    site: str
    shape: tuple[int, ...]
    scaling_dims: tuple[bool, ...] | None
    width: int
    step: int
    state: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


class Probe(Protocol):
    """A statistic of one tensor: returns a 0-d float tensor on the tensor's device, or None where it does
    not apply to that tensor (no row is written)."""

    def __call__(self, x: torch.Tensor, ctx: ProbeContext) -> torch.Tensor | None: ...


_REGISTRY: dict[str, Probe] = {}


def register_probe(name: str, *, sites: Iterable[str] | None = None,
                   first_step: Iterable[str] = ()) -> Callable[[Probe], Probe]:
    """Decorator: make ``fn`` selectable as ``name`` (``--probes name``). ``sites``: the only sites it
    applies to (None: every site); ``first_step``: sites where it is recorded at step 0 only (an expensive
    statistic that the few steps of a check barely move). Stored on the function as ``sites`` and
    ``first_step``, which a probe loaded from a file may set itself."""

    def decorate(fn: Probe) -> Probe:
        if sites is not None:
            fn.sites = frozenset(sites)  # type: ignore[attr-defined]
        if first_step:
            fn.first_step = frozenset(first_step)  # type: ignore[attr-defined]
        _REGISTRY[name] = fn
        return fn

    return decorate


def probe_sites(probe: Probe) -> frozenset[str] | None:
    """The sites ``probe`` applies to (its ``sites`` attribute), or None for every site."""
    sites = getattr(probe, "sites", None)
    return None if sites is None else frozenset(sites)


def applies(probe: Probe, site: str, step: int = 0) -> bool:
    """Whether ``probe`` is recorded at ``site`` at step ``step``."""
    sites = probe_sites(probe)
    return (sites is None or site in sites) and (step == 0 or site not in getattr(probe, "first_step", ()))


def registry() -> dict[str, Probe]:
    """The probes registered so far, by name."""
    return dict(_REGISTRY)
