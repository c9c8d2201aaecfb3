"""The probe API: how a statistic of a recorded tensor is defined, named and selected.

A probe is a function ``probe(x, ctx) -> Tensor`` returning a 0-d tensor. It is called on the tensor's
own device, with ``x`` detached and already in float32, and must not move data to the host: the recorder
stacks every probe's result for the whole model and moves them once per step. ``ctx`` says what ``x`` is
(:class:`ProbeContext`). Register a probe with :func:`register_probe`; select probes by name with
:func:`resolve_probes`, where a name is a registered name, ``path/to/file.py:function`` or
``module:function``.

Example::

    from coordscope import register_probe

    @register_probe("rms_per_token")
    def rms_per_token(x, ctx):
        return x.pow(2).mean(dim=-1).sqrt().mean()
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from coordscope.errors import ProbeError

DEFAULT_PROBES: tuple[str, ...] = ("rms",)


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


def registered_probes() -> dict[str, Probe]:
    """Every registered probe by name, the built-ins included."""
    import coordscope.probes  # noqa: F401  (registers the built-ins)

    return dict(_REGISTRY)


def _load_external(ref: str) -> Probe:
    target, _, attr = ref.rpartition(":")
    if target.endswith(".py") or Path(target).is_file():
        from coordscope.spec import _import_file

        path = Path(target)
        if not path.is_file():
            raise ProbeError(f"probe file {target!r} does not exist")
        try:
            module = _import_file(path)
        except Exception as exc:
            raise ProbeError(f"probe {ref!r}: {exc}") from exc
    else:
        try:
            module = importlib.import_module(target)
        except Exception as exc:
            raise ProbeError(f"probe {ref!r}: cannot import {target!r} ({type(exc).__name__}: {exc})") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ProbeError(f"probe {ref!r}: {target} has no function {attr!r}")
    return fn


def resolve_probes(names: Sequence[str] | str | None) -> dict[str, Probe]:
    """Probes by name, in order: registered names, ``file.py:fn`` or ``module:fn``.

    An external probe is stored under the part after the colon, so its rows read ``probe = fn``.
    """
    if names is None:
        names = DEFAULT_PROBES
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        raise ProbeError("no probes selected")
    known = registered_probes()
    out: dict[str, Probe] = {}
    for name in names:
        if name in known:
            out[name] = known[name]
        elif ":" in name:
            out[name.rpartition(":")[2]] = _load_external(name)
        else:
            raise ProbeError(f"unknown probe {name!r} (known: {', '.join(sorted(known))}; or file.py:function)")
    return out
