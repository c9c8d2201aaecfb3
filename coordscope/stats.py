"""Step statistics: every probe of every recorded tensor of one step, kept on the device and handed to the
host in one transfer.

:class:`StepStats` is the recorder's sink: activations (and their change since step 0), gradients,
parameters and updates each get every selected probe, queued as 0-d device tensors; :meth:`StepStats.end`
stacks them and moves them to the host at once. :class:`UpdateTracker` gives W_{t+1} − W_t for any
optimizer, and :class:`Scratch` is the reused buffer both take differences in.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from coordscope.errors import ProbeError
from coordscope.probe import Probe, ProbeContext
from coordscope.roles import Layer


class Scratch:
    """Reusable buffers, one per device and dtype, grown to the largest tensor asked for.

    The differences coordscope probes (x_t − x_0, W_{t+1} − W_t) are needed only until their probes
    are queued, so one buffer serves them all in turn. A fresh tensor per difference would cost an
    allocation, and on CPU fresh pages, every step for every layer. Work on one device stream keeps
    this safe: a probe queued on a difference runs before the next difference overwrites it.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def like(self, t: torch.Tensor) -> torch.Tensor:
        """A contiguous tensor of ``t``'s shape, dtype and device, valid until the next call."""
        key = (t.device, t.dtype)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() < t.numel():
            buffer = self._buffers[key] = torch.empty(t.numel(), device=t.device, dtype=t.dtype)
        return buffer[: t.numel()].view(t.shape)

    def difference(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``a − b`` in a scratch buffer, valid until the next call."""
        return torch.sub(a, b, out=self.like(a))


class StepStats:
    """Collects one step's probe statistics as device tensors, and hands them over in one transfer."""

    def __init__(self, probes: Mapping[str, Probe], layers: Mapping[str, Layer], width: int) -> None:
        self.probes = probes
        self.layers = layers
        self.width = width
        self.step = 0
        self.initial: dict[str, torch.Tensor] = {}
        self.parameters_seen: set[str] = set()
        self.scratch = Scratch()
        self._keys: list[tuple[str, str, str, str]] = []  # name, site, probe, module
        self._values: list[torch.Tensor] = []

    def begin(self, step: int) -> None:
        self.step = step
        self.parameters_seen.clear()
        self._keys.clear()
        self._values.clear()

    def add(self, name: str, site: str, tensor: torch.Tensor, module_type: str = "") -> None:
        """Queue every probe of ``tensor`` (detached, float32)."""
        x = tensor.detach()
        if x.dtype != torch.float32:
            x = x.float()
        layer = self.layers.get(name)
        ctx = ProbeContext(name, site, tuple(x.shape), layer.scaling_dims if layer else None, self.width,
                           self.step)
        module = module_type or (layer.module if layer else "")
        for probe_name, probe in self.probes.items():
            value = probe(x, ctx)
            if not isinstance(value, torch.Tensor) or value.dim() != 0:
                raise ProbeError(f"probe {probe_name!r} returned {type(value).__name__} "
                                 f"{tuple(getattr(value, 'shape', ()))} for {name}/{site}; it must return a 0-d tensor")
            if value._is_view():  # x may live in a Scratch buffer that the next difference overwrites
                value = value.clone()
            self._keys.append((name, site, probe_name, module))
            self._values.append(value if value.dtype == torch.float32 else value.float())

    def activation(self, name: str, site: str, tensor: torch.Tensor, module_type: str) -> None:
        """Recorder sink: ``act`` also gives ``act_delta`` against the step-0 value."""
        self.add(name, site, tensor, module_type)
        if site != "act":
            return
        x = tensor.detach()
        if self.step == 0:
            self.initial[name] = x.clone()
        start = self.initial.get(name)
        if start is not None and start.shape == x.shape:
            self.add(name, "act_delta", self.scratch.difference(x, start), module_type)

    def parameter(self, name: str, p: torch.Tensor) -> None:
        """``param`` and, if it has one, ``param_grad`` of parameter ``name`` (once per step)."""
        if name in self.parameters_seen:
            return
        self.parameters_seen.add(name)
        self.add(name, "param", p)
        if p.grad is not None:
            self.add(name, "param_grad", p.grad)

    def end(self) -> dict[str, Any]:
        """The step's rows as columns, after one device→host transfer of all values."""
        values: Any = torch.stack(self._values).to("cpu", torch.float64).numpy() if self._values else []
        roles = [self.layers[k[0]].role if k[0] in self.layers else "unknown" for k in self._keys]
        return {
            "names": [k[0] for k in self._keys],
            "sites": [k[1] for k in self._keys],
            "probes": [k[2] for k in self._keys],
            "values": values,
            "roles": roles,
            "modules": [k[3] for k in self._keys],
        }


class UpdateTracker:
    """Gives W_{t+1} − W_t of every trained parameter after each optimizer step, for any optimizer.

    It keeps a snapshot of the parameters. After a step, for each parameter in turn, the update goes into
    a :class:`Scratch` buffer and is handed to the caller, and then the snapshot is refreshed from the
    parameter while that parameter is still hot in cache. Copying every parameter before the step and
    subtracting after it would read each one from memory once more.
    """

    def __init__(self, params: list[tuple[str, nn.Parameter]], scratch: Scratch) -> None:
        self.params = params
        self.scratch = scratch
        with torch.no_grad():
            self.snapshots = [p.detach().clone() for _, p in params]

    def after_step(self, last: bool = False) -> Iterator[tuple[str, torch.Tensor]]:
        """``(name, update)`` per parameter, each valid until the next; call under ``torch.no_grad()``
        right after ``optimizer.step()``. After the ``last`` step no snapshot is needed any more."""
        for (name, p), snapshot in zip(self.params, self.snapshots, strict=True):
            yield name, self.scratch.difference(p, snapshot)
            if not last:
                snapshot.copy_(p)
