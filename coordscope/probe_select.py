"""Selecting probes by name for a run: a registered name (the built-ins ``rms``, ``l1``, ``absmax``, or
one registered with :func:`coordscope.register_probe`), ``path/to/file.py:function`` or ``module:function``."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

import coordscope.probes  # noqa: F401  (registers the built-in probes)
from coordscope.errors import ProbeError
from coordscope.probe import Probe, registry
from coordscope.spec import import_file

DEFAULT_PROBES: tuple[str, ...] = ("rms",)


def _load_external(ref: str) -> Probe:
    target, _, attr = ref.rpartition(":")
    if target.endswith(".py") or Path(target).is_file():
        path = Path(target)
        if not path.is_file():
            raise ProbeError(f"probe file {target!r} does not exist")
        try:
            module = import_file(path)
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
    known = registry()
    out: dict[str, Probe] = {}
    for name in names:
        if name in known:
            out[name] = known[name]
        elif ":" in name:
            out[name.rpartition(":")[2]] = _load_external(name)
        else:
            raise ProbeError(f"unknown probe {name!r} (known: {', '.join(sorted(known))}; or file.py:function)")
    return out
