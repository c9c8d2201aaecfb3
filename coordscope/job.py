"""One job of a coordinate check: one model at one width and seed, trained on the fixed batch.

Step semantics (DESIGN.md): step t is the model after t optimizer updates. At every t = 0..T the forward
pass on the fixed batch gives ``act`` and ``act_delta`` (x_t − x_0); its backward gives ``act_grad`` and
``param_grad``; ``param`` is W_t; then the optimizer steps and ``param_update`` is W_{t+1} − W_t.

Every statistic is a probe's 0-d tensor, computed in float32 on the model's device; a step's statistics
are stacked and moved to the host in **one** transfer, then streamed to the job's Parquet shard as one row
group. Nothing accumulates across steps, so memory does not grow with the number of steps.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from coordscope.errors import CoordscopeError, ProbeError, SpecError
from coordscope.probe import Probe, ProbeContext, resolve_probes
from coordscope.record import Recorder, on_grad_ready
from coordscope.shapes import LOSS, Layer
from coordscope.spec import Spec, build_model, first_batch, load_spec
from coordscope.store import ShardWriter
from coordscope.taps import SdpaTap, sdpa_callers, sdpa_scope

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
          "float16": torch.float16}


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to record one (width, seed) job; picklable when ``spec`` is a ref."""

    spec: Spec | str
    width: int
    seed: int
    steps: int
    lr: float
    probes: tuple[str, ...]
    run_dir: str
    run: str
    layers: Mapping[str, Layer]
    device: str = "cpu"
    dtype: str = "float32"


def seed_everything(seed: int, device: torch.device | str = "cpu") -> None:
    """Seed torch, numpy and ``random`` so model init and data are the same for the same seed.

    For a job on the CPU only the CPU generator is seeded. ``torch.manual_seed`` also queues a seeding
    of every CUDA device, and where CUDA is not initialised it records a stack trace for that call each
    time, which cost more per job than a small width's whole training step here.
    """
    if torch.device(device).type == "cpu":
        torch.random.default_generator.manual_seed(seed)
    else:
        torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def to_device(batch: Any, device: torch.device | str, dtype: torch.dtype) -> Any:
    """Move the tensors of a batch (nested tuples, lists, dicts) to ``device``; floats to ``dtype``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, dtype) if batch.is_floating_point() else batch.to(device)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device, dtype) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(v, device, dtype) for v in batch)
    return batch


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


def checked_loss(spec: Spec, model: nn.Module, batch: Any, width: int, step: int) -> torch.Tensor:
    """The spec's loss, with a failure or a non-scalar result turned into one line naming width and step."""
    try:
        loss = spec.compute_loss(model, batch)
    except CoordscopeError:
        raise
    except Exception as exc:
        raise SpecError(f"spec {spec.ref!r}: the loss raised at width {width}, step {step}: "
                        f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise SpecError(f"spec {spec.ref!r}: the loss must be a scalar tensor, got {type(loss).__name__}")
    return loss


def record_job(job: Job, on_step: Callable[[], None] | None = None) -> str:
    """Train one model for ``job.steps`` steps on the fixed batch, streaming statistics to its shard.
    Returns the shard's path; on any exception the half-written shard is deleted."""
    spec = load_spec(job.spec)
    probes = resolve_probes(list(job.probes))
    dtype = DTYPES[job.dtype]
    seed_everything(job.seed, job.device)
    model = build_model(spec, job.width).to(job.device, dtype)
    batch = to_device(first_batch(spec), job.device, dtype)
    optimizer = spec.make_optimizer(model, job.lr)
    params = list(model.named_parameters())
    trained = [(n, p) for n, p in params if p.requires_grad]
    stats = StepStats(probes, job.layers, job.width)
    updates = UpdateTracker(trained, stats.scratch)

    with ShardWriter(Path(job.run_dir), job.run, job.width, job.seed) as writer, \
            Recorder(model, stats.activation), sdpa_scope(model, sdpa_callers(job.layers)), \
            on_grad_ready(params, stats.parameter):
        for step in range(job.steps + 1):
            stats.begin(step)
            model.train()
            loss = checked_loss(spec, model, batch, job.width, step)
            stats.add(LOSS, "loss", loss, "<loss>")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # hands each parameter to stats.parameter as its gradient is ready
            for name, p in params:  # those that got no gradient: frozen or unused
                stats.parameter(name, p)
            with torch.no_grad():
                optimizer.step()
                for name, update in updates.after_step(last=step == job.steps):
                    stats.add(name, "param_update", update)
            writer.write(step, **stats.end())
            if on_step is not None:
                on_step()
        return str(writer.commit())


def observe_shapes(spec: Spec, model: nn.Module, batch: Any, width: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Run one forward pass (no grad) and note the module type and shape of every recorded name."""
    seen: dict[str, tuple[str, tuple[int, ...]]] = {}

    def sink(name: str, site: str, tensor: torch.Tensor, module_type: str) -> None:
        seen.setdefault(name, (module_type, tuple(tensor.shape)))

    with Recorder(model, sink, grads=False), SdpaTap(), torch.no_grad():
        loss = checked_loss(spec, model, batch, width, 0)
    seen[LOSS] = ("<loss>", tuple(loss.shape))
    return seen
