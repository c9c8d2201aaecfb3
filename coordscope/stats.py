"""Step statistics: every probe of every recorded tensor of one step, kept on the device and handed to the
host in one transfer (one collective under torchrun).

:class:`StepStats` is the recorder's sink: activations (and their change since step 0), gradients,
parameters and updates each get every selected probe, queued as 0-d device tensors; :meth:`StepStats.end`
stacks them and moves them to the host at once. :class:`ParameterSites` measures every parameter, gradient
and update (W_{t+1} − W_t, for any optimizer, without a second copy of the parameters) in a few kernels,
reading big tensors at the entries :class:`Subsets` picks, and :class:`Scratch` is the reused buffer
differences are taken in.

Under torchrun (:mod:`coordscope.distributed`) a probe's value over a tensor that is split across ranks —
a sharded parameter, or an activation of each rank's share of the batch — cannot be taken on one rank.
The built-in ``rms``, ``l1`` and ``absmax`` are sums or maxima over entries (:data:`REDUCTIONS`): each rank
queues its partial sum (or maximum) and entry count, and :meth:`StepStats.end` combines every rank's
partials after one ``all_gather``. The same property lets ``rms`` and ``l1`` of a difference be estimated
on a fixed subset of a big tensor's entries (:mod:`coordscope.sampling`).
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from coordscope.distributed import World, is_dtensor, piece
from coordscope.errors import ProbeError
from coordscope.outputs import LOSS, OUTPUT
from coordscope.probe import Probe, ProbeContext, applies
from coordscope.probes import builtin
from coordscope.roles import Layer
from coordscope.sampling import SAMPLE, Positions, matrix, positions

WHOLE_UPDATES = 1 << 18
"""A matrix with at most this many entries (512 × 512) keeps its whole update between the step's start and end
when a probe that is called per tensor applies to updates (``spectral``: ‖ΔW‖₂ needs all of ΔW). Why a cap:
a whole copy of every matrix is what raised the peak memory of a recorded MLP at width 4096 to 1.48× plain
training (issue 19); coordinate checks run their proxies at widths up to about 512, where the copies are
small. Bigger matrices' updates get no row from such a probe unless ``exact=True``: no estimate stands in.
Of the matrices bigger than the sampled subset, only hidden ones (and those whose role is not known yet) keep
theirs: the check judges ‖ΔW‖₂ there, and μP leaves an input or output matrix's free (docs/theory.md);
``exact=True`` keeps every one."""

FORWARD_SITES: tuple[str, ...] = ("act", "act_delta", "act_grad", "loss")
"""Sites measured on the fixed batch (what an extra pass replaces); under torchrun, each rank's share of it."""

PARAMETER_SITES: tuple[str, ...] = ("param", "param_grad", "param_update")
TWIN_SITES: tuple[str, ...] = ("act", "act_delta", "act_grad")
"""Sites where one tensor can be recorded under two names (a module's output that is the model's)."""
Key = tuple[str, str, str, str]  # name, site, probe, module


@dataclass(frozen=True)
class Reduction:
    """How a probe's value over a whole tensor is rebuilt from partials over its parts: ``rms`` =
    √(Σx²/n), ``mean`` = Σ|x|/n, ``max`` = max |x|. Every one is absolutely homogeneous (probe(c·x) =
    |c|·probe(x)), which lets an ``act_grad`` be rescaled after combining."""

    kind: str

    def part(self, x: torch.Tensor, scratch: Scratch) -> torch.Tensor:
        """This part's partial: Σx², Σ|x| or max|x| (0-d, on x's device).

        Σx² is a BLAS dot product: on CPU 2.5× faster than a norm kernel on a 4 MB weight, and more exact
        (relative error 1e-5 against 9e-5 at 4M entries). A strided tensor (a subset of a weight, a
        transposed gradient) is first copied into ``scratch``: the norm kernel on strided memory took 3×
        as long as the copy and the dot together."""
        if x.numel() == 0:
            return x.new_zeros(())
        if self.kind == "rms":
            if not x.is_contiguous():
                x = scratch.like(x).copy_(x)
            flat = x.view(-1)
            return torch.dot(flat, flat)
        if self.kind == "mean":
            return x.abs().sum()
        return x.abs().amax()

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, str]:
        """The partial of ``a − b`` and its kind: ‖a − b‖_p in one ``torch.dist`` call (an ``rms`` partial is
        then ‖·‖₂, kind ``norm``, squared on the host). ``dist`` still subtracts, into a temporary of its own;
        what it saves is the :class:`Scratch` round trip through Python: on CPU, subtracting a strided subset
        of a fresh activation into scratch and reducing it cost 3× a ``dist`` of it (84 against 27 µs on the
        GPT sample's ``c_attn`` output)."""
        return torch.dist(a, b, NORMS[self.kind]), "norm" if self.kind == "rms" else self.kind


REDUCTIONS: dict[Any, Reduction] = {builtin.rms: Reduction("rms"), builtin.l1: Reduction("mean"),
                                    builtin.absmax: Reduction("max")}
"""The probes that can be combined across ranks, by function (a probe registered under another name too)."""
MEANS = ("rms", "mean")
NORMS = {"rms": 2.0, "mean": 1.0, "max": float("inf")}
"""The vector norm whose value is each reduction's partial (‖x‖₂ squared, for rms)."""
"""Reductions that are means over entries, which a subset of entries estimates without bias."""


def default_role(name: str, module: str) -> str:
    """The role of a name no inference has reached yet: what the name alone says, else ``unknown``."""
    if name == OUTPUT:
        return "output"
    if name == LOSS:
        return "loss"
    if module == "tap" and name.split("#")[0].endswith("attn_logits"):
        return "attn_logits"
    return "unknown"


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
    """Collects one step's probe statistics as device tensors, and hands them over in one transfer.

    What is queued per tensor and probe is a *partial* (:class:`Reduction`): Σx² for ``rms``, Σ|x| for
    ``l1``, max|x| for ``absmax`` — one kernel each, the division and square root done for every statistic
    at once on the host — or, for any other probe, its value. ``sample``: differences of tensors with more
    entries are estimated on that many fixed entries (:mod:`coordscope.sampling`), when every probe is a
    mean (``rms``, ``l1``); ``exact=True`` or any other probe keeps whole copies — of the sites that probe
    applies to (:func:`coordscope.probe.applies`: ``spectral`` needs whole updates, not whole activations).
    A probe is queued only at the sites it applies to, and a probe that returns None writes no row. ``world``:
    under torchrun, every rank's partials are combined in :meth:`end`; only the probes of :data:`REDUCTIONS`
    can be.
    """

    def __init__(self, probes: Mapping[str, Probe], layers: Mapping[str, Layer], width: int, *,
                 sample: int | None = SAMPLE, exact: bool = False, world: World | None = None) -> None:
        self.probes = probes
        self.layers = layers
        self.width = width
        self.world = world
        self.step = 0
        found = {name: REDUCTIONS.get(probe) for name, probe in probes.items()}
        if world is not None and any(r is None for r in found.values()):
            odd = sorted(name for name, r in found.items() if r is None)
            raise ProbeError(f"probe {', '.join(odd)} cannot be combined across ranks; under torchrun record "
                             "with rms, l1 or absmax")
        self.reductions = found
        self.exact = exact

        def sampled(site: str) -> int | None:
            means = all(r is not None and r.kind in MEANS for name, r in found.items() if applies(probes[name], site))
            return sample if means and not exact else None

        self.sample = sampled("act_delta")
        """How many entries of a big activation its change from step 0 is measured on (None: every one)."""
        # a reduction that is not a mean (absmax) needs every entry of every update; a probe called per tensor
        # (spectral, your own) gets whole updates of the matrices up to WHOLE_UPDATES entries (:class:`Subsets`)
        means = all(r is None or r.kind in MEANS for name, r in found.items() if applies(probes[name], "param_update"))
        self.update_sample = sample if means and not exact else None
        """The same for a parameter's update (:class:`Subsets`)."""
        self.whole_updates = WHOLE_UPDATES if any(
            r is None and applies(probes[name], "param_update") for name, r in found.items()) else 0
        """Matrices up to this many entries keep their whole update, for the probes called per tensor."""
        self._phases = [{site: [(name, found[name]) for name, probe in probes.items() if applies(probe, site, step)]
                         for site in (*FORWARD_SITES, *PARAMETER_SITES)} for step in (0, 1)]
        self._plans = self._phases[0]
        """Per site, the probes recorded there this step and their reductions (at step 0, and after it: a
        probe may be recorded at a site at step 0 only), looked up once rather than at every tensor."""
        self._state: dict[tuple[str, str, str], dict[str, Any]] = {}  # ProbeContext.state
        self.initial: dict[str, tuple[torch.Tensor, Positions | None, tuple[int, ...]]] = {}
        self.parameters_seen: set[str] = set()
        self.scratch = Scratch()
        self._keys: list[Key] = []
        self._values: list[torch.Tensor | None] = []
        self._counts: list[int] = []
        self._kinds: list[str] = []
        self._twins: dict[tuple[int, str], tuple[weakref.ref[torch.Tensor], int, int, int]] = {}
        self._declared: list[Key] = []
        self._layout: dict[Key, int] | None = None
        self._labels: tuple[list[Key], dict[str, list[str]]] | None = None  # see _columns
        self._warned: set[str] = set()
        self.own_forward = True
        """Set before :meth:`end`: whether this rank measured this step on the loop's own forward pass."""
        self.all_own_forward = True

    # -- queueing ---------------------------------------------------------------------------------------

    def begin(self, step: int) -> None:
        self.step = step
        self._plans = self._phases[min(step, 1)]
        self.parameters_seen.clear()
        for queue in (self._keys, self._values, self._counts, self._kinds):
            queue.clear()
        self._twins.clear()

    def _queue(self, key: Key, value: torch.Tensor | None, count: int, kind: str) -> None:
        self._keys.append(key)
        self._values.append(value)
        self._counts.append(count)
        self._kinds.append(kind)

    def applies(self, probe_name: str, site: str) -> bool:
        """Whether probe ``probe_name`` is recorded at ``site`` this step."""
        plan = self._plans.get(site)
        if plan is None:
            return applies(self.probes[probe_name], site, self.step)
        return any(name == probe_name for name, _ in plan)

    def add(self, name: str, site: str, tensor: torch.Tensor, module_type: str = "", *,
            contributes: bool = True, twin_of: torch.Tensor | None = None, reduced: bool = True) -> None:
        """Queue every probe of ``tensor`` (detached, float32). Under torchrun, ``contributes=False`` says this
        rank's values are counted by another rank (a replicated parameter): nothing is computed.

        A tensor queued once this step under another name (a readout's output is also ``<output>``; a hook
        on each sees the same gradient) is not measured again: its statistics are copied (:meth:`_twin`).
        ``twin_of``: the tensor that identifies ``tensor`` for this (an activation, for its difference from
        step 0). ``reduced=False``: only the probes that are not :data:`REDUCTIONS` (the rest were queued in
        bulk)."""
        module = module_type or self._module(name)
        anchor = tensor if twin_of is None else twin_of
        if site in TWIN_SITES and self._twin(name, site, anchor, module):
            return
        first = len(self._keys)
        x = tensor.detach()
        if x.dtype != torch.float32 and contributes:
            x = x.float()
        for probe_name, reduction in self._plans[site]:
            if reduction is not None and not reduced:
                continue
            key = (name, site, probe_name, module)
            if not contributes:
                self._queue(key, None, 0, reduction.kind if reduction else "value")
            elif site == "loss" and self.world is not None:  # the loss of the whole batch: the ranks' mean
                self._queue(key, x.reshape(()), 1, "loss")
            elif reduction is not None:
                self._queue(key, reduction.part(x, self.scratch), x.numel(), reduction.kind)
            else:
                value = self._probe(probe_name, x, name, site, self.layers.get(name))
                if value is not None:  # None: the probe does not apply to this tensor
                    self._queue(key, value, 1, "value")
        if site in TWIN_SITES:
            self._note_twin(anchor, site, first)

    def _module(self, name: str) -> str:
        layer = self.layers.get(name)
        return layer.module if layer else ""

    def _twin(self, name: str, site: str, anchor: torch.Tensor, module: str) -> bool:
        """Copy the statistics queued this step for ``anchor`` at ``site`` under ``name``, if there are any.
        The same tensor object changed in place since (``nn.ReLU(inplace=True)`` returns the ``Linear``
        output it overwrote) is another tensor: its version counter tells."""
        twin = self._twins.get((id(anchor), site))
        if twin is None or twin[0]() is not anchor or twin[1] != anchor._version:
            return False
        for i in range(twin[2], twin[3]):
            self._queue((name, site, self._keys[i][2], module), self._values[i], self._counts[i], self._kinds[i])
        return True

    def _note_twin(self, anchor: torch.Tensor, site: str, first: int) -> None:
        """``anchor``'s statistics at ``site`` are the queue's entries from ``first`` on."""
        self._twins[(id(anchor), site)] = (weakref.ref(anchor), anchor._version, first, len(self._keys))

    def _probe(self, probe_name: str, x: torch.Tensor, name: str, site: str, layer: Layer | None
               ) -> torch.Tensor | None:
        ctx = ProbeContext(name, site, tuple(x.shape), layer.scaling_dims if layer else None, self.width, self.step,
                           self._state.setdefault((name, site, probe_name), {}))
        value = self.probes[probe_name](x, ctx)
        if value is None:
            return None
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            raise ProbeError(f"probe {probe_name!r} returned {type(value).__name__} "
                             f"{tuple(getattr(value, 'shape', ()))} for {name}/{site}; it must return a 0-d tensor")
        if value._is_view():  # x may live in a Scratch buffer that the next difference overwrites
            value = value.clone()
        return value if value.dtype == torch.float32 else value.float()

    def activation(self, name: str, site: str, tensor: torch.Tensor, module_type: str) -> None:
        """Recorder sink: ``act`` also gives ``act_delta`` against the step-0 value (on a fixed subset of a
        big tensor's entries, see :mod:`coordscope.sampling`)."""
        self.add(name, site, tensor, module_type)
        if site != "act" or self._twin(name, "act_delta", tensor, module_type):
            return  # the same output under another name: copied
        x = tensor.detach()
        if self.step == 0 and name not in self.initial:
            rows, cols = matrix(tuple(x.shape), activation=True)
            # Under torchrun each rank holds an equal share of the batch; its rows of the concatenated
            # batch start at rank × rows, so the kept positions are those a single process would keep.
            where = (positions(rows, cols, self.sample) if self.world is None else
                     positions(rows * self.world.size, cols, self.sample, self.world.rank * rows, rows))
            kept = (x.clone(memory_format=torch.contiguous_format) if where is None
                    else where.take(x).clone(memory_format=torch.contiguous_format))
            self.initial[name] = (kept, where, tuple(x.shape))
        start = self.initial.get(name)
        if start is None or start[2] != tuple(x.shape):
            return
        kept, where, _ = start
        self._difference(name, x if where is None else where.take(x), kept, module_type, tensor)

    def _difference(self, name: str, now: torch.Tensor, kept: torch.Tensor, module: str, anchor: torch.Tensor
                    ) -> None:
        """Queue ``act_delta``, every probe of ``now − kept``. Of a float32 tensor the built-in reductions'
        partials come from one ``torch.dist`` each (:meth:`Reduction.distance`); other probes, and
        tensors of other dtypes (the difference in their precision, then float32 as :meth:`add` does), get
        the difference in a :class:`Scratch` buffer."""
        first, module = len(self._keys), module or self._module(name)
        fused = now.dtype == torch.float32
        plan = self._plans["act_delta"]
        for probe_name, reduction in plan:
            if reduction is not None and fused:
                value, kind = reduction.distance(now, kept)
                self._queue((name, "act_delta", probe_name, module), value, now.numel(), kind)
        if not fused or any(reduction is None for _, reduction in plan):
            self.add(name, "act_delta", self.scratch.difference(now, kept), module, twin_of=anchor, reduced=not fused)
        self._note_twin(anchor, "act_delta", first)

    def add_many(self, names: Sequence[str], site: str, tensors: Sequence[torch.Tensor], modules: Sequence[str],
                 counted: Sequence[bool], minus: Sequence[torch.Tensor | None] | None = None) -> None:
        """Queue the built-in probes of many tensors at once: one ``torch._foreach_norm`` per probe (the 1-, 2-
        and ∞-norms are the partials of ``l1``, ``rms`` and ``absmax``), except Σx² of contiguous float32
        tensors on CPU, where ``torch._foreach_norm`` is a loop of norm kernels and a dot product per tensor
        took 0.57 ms against its 0.95 on the GPT sample's parameters at width 512. ``minus[k]``: measure
        ``tensors[k] − minus[k]`` instead, by one ``torch.dist`` (:meth:`Reduction.distance`;
        subtracting a strided subset of a parameter in place cost 0.45 ms a step on the GPT sample).
        ``counted[k]`` False: this rank does not count ``tensors[k]`` (under torchrun), nothing is computed for
        it. Other probes are left to :meth:`add` with ``reduced=False``."""
        pairs = minus or [None] * len(tensors)
        live = [t for t, c, m in zip(tensors, counted, pairs, strict=True) if c and m is None]
        as_float = None if all(t.dtype == torch.float32 for t in live) else torch.float32
        dots = as_float is None and all(t.device.type == "cpu" and t.is_contiguous() for t in live)
        for probe_name, reduction in self.reductions.items():
            if reduction is None or not self.applies(probe_name, site):
                continue
            kind = "norm" if reduction.kind == "rms" else reduction.kind
            parts: Sequence[torch.Tensor] = []
            if reduction.kind == "rms" and dots:
                flats = [t if t.dim() == 1 else t.view(-1) for t in live]
                parts, kind = [torch.dot(flat, flat) for flat in flats], "rms"
            elif live:
                parts = torch._foreach_norm(live, NORMS[reduction.kind], dtype=as_float)
            values = iter(parts)
            for name, tensor, module, count, other in zip(names, tensors, modules, counted, pairs, strict=True):
                key = (name, site, probe_name, module)
                if not count:
                    self._queue(key, None, 0, kind)
                elif other is None:
                    self._queue(key, next(values), tensor.numel(), kind)
                else:
                    value, kind_of_pair = reduction.distance(tensor.float(), other.float())
                    self._queue(key, value, tensor.numel(), kind_of_pair)

    def parameter(self, name: str, p: torch.Tensor, module_type: str = "", *, subsets: Subsets | None = None,
                  index: int = 0) -> None:
        """``param`` and, if it has one, ``param_grad`` of parameter ``name`` (once per step), whole: this
        rank's shard of them with ``subsets`` (parameter ``index`` there, which says whether it counts)."""
        if name in self.parameters_seen:
            return
        self.parameters_seen.add(name)
        if subsets is None:
            self.add(name, "param", p, module_type)
            if p.grad is not None:
                self.add(name, "param_grad", p.grad, module_type)
            return
        counted = subsets.counted(index)
        self.add(name, "param", subsets.whole(p) if counted else p, module_type, contributes=counted)
        if p.grad is not None:
            grad = subsets.whole(p.grad) if counted else p.grad
            self.add(name, "param_grad", grad, module_type, contributes=counted)

    def discard_forward(self) -> None:
        """Forget this step's forward sites (an extra pass on the fixed batch measures them again)."""
        keep = [i for i, key in enumerate(self._keys) if key[1] not in FORWARD_SITES]
        self._keys[:] = [self._keys[i] for i in keep]
        self._values[:] = [self._values[i] for i in keep]
        self._counts[:] = [self._counts[i] for i in keep]
        self._kinds[:] = [self._kinds[i] for i in keep]
        self._twins.clear()
        if self.step == 0:
            self.initial.clear()

    def recorded_taps(self) -> list[str]:
        """The names of the taps queued so far this step."""
        return [key[0] for key in self._keys if key[3] == "tap"]

    def declare(self, keys: Iterable[Key]) -> None:
        """Under torchrun: keys that later steps may record although step 0 did not (parameter sites)."""
        self._declared.extend(keys)

    # -- handing over -----------------------------------------------------------------------------------

    def role(self, name: str, module: str) -> str:
        layer = self.layers.get(name)
        return layer.role if layer is not None else default_role(name, module)

    def end(self) -> dict[str, Any]:
        """The step's rows as columns, after one device→host transfer of all values (under torchrun, one
        ``all_gather``, which also carries :attr:`own_forward` and sets :attr:`all_own_forward`: whether
        every rank measured its forward sites in the loop's own forward pass)."""
        self._twins.clear()
        if self.world is not None:
            return self._end_distributed(self.own_forward)
        self.all_own_forward = self.own_forward
        if not self._values:
            return self._columns([], np.zeros(0))
        parts = torch.stack([v if v is not None else torch.zeros(()) for v in self._values])
        sums = parts.to("cpu", torch.float64).numpy()
        values = _finish(np.array(self._kinds), sums, np.array(self._counts, dtype=np.float64))
        return self._columns(self._keys, values)

    def _columns(self, keys: list[Key], values: Any) -> dict[str, Any]:
        """The rows' columns. A loop records the same keys in the same order at every step: the label
        columns of the previous step are handed out again then, not rebuilt row by row."""
        if self._labels is None or self._labels[0] != keys:
            self._labels = (list(keys), {
                "names": [k[0] for k in keys],
                "sites": [k[1] for k in keys],
                "probes": [k[2] for k in keys],
                "roles": [self.role(k[0], k[3]) for k in keys],
                "modules": [k[3] for k in keys],
            })
        return {**self._labels[1], "values": values}

    def _end_distributed(self, own_forward: bool) -> dict[str, Any]:
        world = self.world
        assert world is not None
        if self._layout is None:  # step 0: agree once on every key any rank records, in one order
            union: dict[Key, str] = {}
            for keys in world.all_gather_objects(list(dict.fromkeys(zip(self._keys, self._kinds, strict=True)))):
                union.update({key: kind for key, kind in keys if key not in union})
            for key in self._declared:
                union.setdefault(key, "rms")
                reduction = self.reductions.get(key[2])
                union[key] = reduction.kind if reduction else union[key]
            self._layout = {key: i for i, key in enumerate(union)}
            self._layout_kinds = np.array(list(union.values()), dtype=object)
        layout = self._layout
        n = len(layout)
        device = next((v.device for v in self._values if v is not None), world.device)
        zero = torch.zeros((), device=device)
        slots: list[torch.Tensor] = [zero] * n
        counts = [0.0] * n
        kinds = self._layout_kinds.copy()
        for key, value, count, kind in zip(self._keys, self._values, self._counts, self._kinds, strict=True):
            index = layout.get(key)
            if index is None:
                self._warn("layout", f"{key[0]}/{key[1]} was not recorded at step 0 on any rank; it is left out")
                continue
            if value is not None:
                slots[index] = value.float()
            counts[index] = float(count)
            kinds[index] = kind
        stacked = (torch.stack(slots).to(world.device, torch.float64) if n
                   else torch.zeros(0, dtype=torch.float64, device=world.device))
        vector = torch.cat([stacked,
                            torch.tensor([*counts, float(own_forward)], dtype=torch.float64).to(world.device)])
        gathered = world.all_gather(vector)
        parts, count_table, flags = gathered[:, :n], gathered[:, n:2 * n], gathered[:, 2 * n]
        keys = list(layout)
        values, chosen = _combine(keys, kinds, parts, count_table, world.size)
        incomplete = [keys[i][0] for i in np.flatnonzero(~chosen & (count_table.sum(axis=0) > 0))]
        if incomplete:
            self._warn("incomplete", f"step {self.step}: some ranks did not measure {incomplete[0]} (and "
                       f"{len(incomplete) - 1} more) on the fixed batch; those rows are left out")
        kept = [keys[i] for i in np.flatnonzero(chosen)]
        self.all_own_forward = bool(flags.min() > 0)
        return self._columns(kept, values[chosen])

    def _warn(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(f"coordscope: {message}", stacklevel=3)


def _squared(kinds: np.ndarray, parts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Partials queued as ‖x‖₂ (``norm``) turned into Σx² (``rms``), which add up across ranks."""
    norm = kinds == "norm"
    return np.where(norm, "rms", kinds), np.where(norm, parts * parts, parts)


def _finish(kinds: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Statistics from partials (see :class:`Reduction`): √(Σx²/n), Σ|x|/n, the maximum or value as it is,
    and the mean loss's size."""
    kinds, sums = _squared(kinds, sums)
    safe = np.where(counts > 0, counts, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / safe
        out = np.where(kinds == "rms", np.sqrt(mean), mean)
        out = np.where(kinds == "loss", np.abs(mean), out)
        return np.where((kinds == "max") | (kinds == "value"), sums, out).astype(np.float64)


def _combine(keys: list[Key], kinds: np.ndarray, parts: np.ndarray, counts: np.ndarray, ranks: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """Every key's value from the ranks' partials ([ranks, keys] each), and which keys make a row: counted
    by some rank, and — for the fixed batch's sites, which every rank holds a share of — by every rank."""
    if not keys:
        return np.zeros(0), np.zeros(0, dtype=bool)
    kinds, parts = _squared(kinds, parts)
    total = counts.sum(axis=0)
    with np.errstate(invalid="ignore"):
        maxima = np.where(counts > 0, parts, -np.inf).max(axis=0)
    values = np.where(kinds == "max", maxima, _finish(kinds, parts.sum(axis=0), total))
    sites = np.array([k[1] for k in keys], dtype=object)
    values = np.where(sites == "act_grad", values / ranks, values)  # DDP and FSDP average the ranks' losses
    forward = np.isin(sites, FORWARD_SITES)
    chosen = (total > 0) & ~(forward & (counts == 0).any(axis=0))
    return values.astype(np.float64), chosen


class Subsets:
    """Which entries of each parameter its update is measured on, and this rank's part of it.

    A parameter with more entries than ``sample`` keeps the fixed positions :mod:`coordscope.sampling`
    picks for W_{t+1} − W_t, a smaller one (or every one, ``sample`` None) all of them; ``param`` (W_t) is
    read there too, from the entries kept for the update: weights are dense, and reading them whole cost
    1–2 % of a GPT step. ``param_grad`` is read whole (:meth:`whole`): read at those positions, a gradient
    whose mass sits in a few units gave slopes 0.13 off on the GPT sample (benchmarks/sampling_error.py).
    Positions are worked out once per parameter, and the view of a parameter is kept while it keeps its
    memory (optimizers update in place). Under torchrun they are the positions of this rank's shard.
    """

    def __init__(self, params: list[tuple[str, nn.Parameter]], sample: int | None, world: World | None,
                 whole_matrices: int = 0, partial: frozenset[str] = frozenset()) -> None:
        self.params = params
        self.sample = sample
        self.whole_matrices = whole_matrices
        self.partial = partial  # names never kept whole for ``whole_matrices``
        self.world = world
        self._where: dict[int, Positions | None] = {}
        self._counted: dict[int, bool] = {}
        self._views: dict[tuple[int, str], tuple[int, torch.Tensor]] = {}

    def counted(self, i: int) -> bool:
        """Whether this rank counts parameter ``i`` (under torchrun a replicated one is rank 0's)."""
        if i not in self._counted:
            self._plan(i)
        return self._counted[i]

    def _plan(self, i: int) -> None:
        part = piece(self.params[i][1].detach(), self.world, replicated=True)
        self._counted[i] = part.contributes
        where = None
        if part.row_offset is not None:
            rows, cols = matrix(part.shape)
            local_rows = part.local.shape[0] if part.local.dim() else 1
            whole = (len(part.shape) >= 2 and rows * cols <= self.whole_matrices
                     and self.params[i][0] not in self.partial)
            where = positions(rows, cols, None if whole else self.sample, part.row_offset, local_rows, every_row=True)
        self._where[i] = where

    def is_whole(self, i: int) -> bool:
        """Whether parameter ``i``'s every entry is kept (its update is whole)."""
        if i not in self._where:
            self._plan(i)
        return self._where[i] is None

    def whole(self, tensor: torch.Tensor | None) -> torch.Tensor:
        """Every entry of ``tensor`` this rank holds (its shard under FSDP2), contiguous."""
        assert tensor is not None
        local = piece(tensor.detach(), self.world, replicated=True).local if is_dtensor(tensor) else tensor.detach()
        return local if local.is_contiguous() else local.contiguous()

    def view(self, i: int, tensor: torch.Tensor, kind: str) -> torch.Tensor:
        """The read entries of ``tensor`` — parameter ``i`` itself, or its gradient (``kind`` names which)."""
        if i not in self._where:
            self._plan(i)
        where = self._where[i]
        if is_dtensor(tensor):
            local = piece(tensor.detach(), self.world, replicated=True).local
            return local if where is None else where.take(local)
        if where is None:
            return tensor.detach()
        cached = self._views.get((i, kind)) if kind == "param" else None
        if cached is not None and cached[0] == tensor.data_ptr() and cached[1].dtype == tensor.dtype:
            return cached[1]
        local = tensor.detach()
        view = where.take(local)
        if kind == "param" and local.is_contiguous():  # a gradient's view would keep a freed gradient alive
            self._views[(i, kind)] = (tensor.data_ptr(), view)
        return view

    def release(self) -> None:
        self._views.clear()


class ParameterSites:
    """``param``, ``param_grad`` and ``param_update`` of every parameter, for any optimizer, without a second
    copy of the model, in a few kernels per step.

    :meth:`keep` (right before the optimizer step) copies each trained parameter's :class:`Subsets` entries
    — all of a small tensor, a fixed subset of a big one — into buffers allocated once; :meth:`measure`
    takes ``param`` from them and ``param_grad`` from the whole gradients; :meth:`measure_updates` (right after
    the step) subtracts the new values from the kept ones in place and takes ``param_update`` from that.
    With the built-in probes each of these is one ``torch._foreach_norm`` per probe for all parameters
    together (‖x‖₂, ‖x‖₁, ‖x‖∞: the partials of ``rms``, ``l1``, ``absmax``): a model has hundreds of
    parameters, and a kernel launch per tensor cost more than the arithmetic. Any other probe (``spectral``)
    is then called per tensor on whole values, where it applies: W_t is the parameter itself, and the updates
    of matrices up to :data:`WHOLE_UPDATES` entries are kept whole for it (:attr:`StepStats.whole_updates`).
    With ``exact=True`` each tensor is measured in turn, whole, by every probe. Under torchrun each rank
    handles its shard's entries, and a rank that does not count a replicated parameter computes nothing.
    """

    def __init__(self, params: list[tuple[str, nn.Parameter]], stats: StepStats, modules: Mapping[str, str],
                 world: World | None = None) -> None:
        self.params = params
        self.stats = stats
        self.modules = [modules.get(name, "Parameter") for name, _ in params]
        # whole updates for the hidden matrices (and those of unknown role): the ones whose ‖ΔW‖₂ the check
        # judges; μP leaves the input and output matrices' free (docs/theory.md)
        partial = frozenset(name for name, layer in stats.layers.items() if layer.role != "hidden")
        self.subsets = Subsets(params, stats.update_sample, world, stats.whole_updates, partial)
        self.trained = [i for i, (_, p) in enumerate(params) if p.requires_grad]
        # exact=True reads whole tensors: one dot product each then, more exact than a norm kernel on
        # millions of entries (relative error 1e-5 against 9e-5 at 4M)
        self.batched = not stats.exact and (stats.update_sample is not None or world is None)
        self._others = [name for name, r in stats.reductions.items() if r is None]  # called per tensor
        self._kept: dict[int, torch.Tensor] = {}
        self._flat: dict[int, torch.Tensor] = {}  # the kept buffers, flat
        self._fresh = False  # the kept values are this step's W_t

    def _buffer(self, i: int, like: torch.Tensor) -> torch.Tensor:
        """Parameter ``i``'s buffer of ``like``'s shape, allocated once, whose flat view is kept too
        (:attr:`_flat`): the dot products of :meth:`StepStats.add_many` read it without a ``view`` call per
        tensor and step."""
        buffer = self._kept.get(i)
        if buffer is None or buffer.shape != like.shape or buffer.dtype != like.dtype:
            self._flat[i] = torch.empty(like.numel(), dtype=like.dtype, device=like.device)
            buffer = self._kept[i] = self._flat[i].view(like.shape)
        return buffer

    def keep(self) -> None:
        """Keep the current values (call right before ``optimizer.step()``, under ``torch.no_grad()``)."""
        items = [(i, self.subsets.view(i, self.params[i][1], "param")) for i in self.trained
                 if self.subsets.counted(i)]
        if items:  # contiguous copies of the kept entries, in one kernel
            torch._foreach_copy_([self._buffer(i, view) for i, view in items], [view for _, view in items])
        self._fresh = True

    def measure(self) -> None:
        """Queue ``param`` and ``param_grad`` of every parameter (under ``torch.no_grad()``)."""
        if not self.batched:
            for i, (name, p) in enumerate(self.params):
                self.stats.parameter(name, p, self.modules[i], subsets=self.subsets, index=i)
            return
        counted = [self.subsets.counted(i) for i in range(len(self.params))]
        values: list[torch.Tensor] = []
        for i, (_, p) in enumerate(self.params):  # W_t: the entries just kept, or (frozen ones) a view
            if i in self._kept and self._fresh:
                values.append(self._flat[i])
            else:
                view = self.subsets.view(i, p, "param") if counted[i] else p.detach()
                values.append(view if view.is_contiguous() or not counted[i] else view.contiguous())
        self.stats.add_many([n for n, _ in self.params], "param", values, self.modules, counted)
        with_grad = [i for i, (_, p) in enumerate(self.params) if p.grad is not None]
        grads = [self.subsets.whole(self.params[i][1].grad) if counted[i] else self.params[i][1]
                 for i in with_grad]
        self.stats.add_many([self.params[i][0] for i in with_grad], "param_grad", grads,
                            [self.modules[i] for i in with_grad], [counted[i] for i in with_grad])
        if self._applies("param"):
            for i, (name, p) in enumerate(self.params):
                if counted[i]:
                    self.stats.add(name, "param", self.subsets.whole(p), self.modules[i], reduced=False)
        if self._applies("param_grad"):
            for i, grad in zip(with_grad, grads, strict=True):
                if counted[i]:
                    self.stats.add(self.params[i][0], "param_grad", grad, self.modules[i], reduced=False)

    def _applies(self, site: str) -> bool:
        """Whether a probe outside the bulk ones is recorded at ``site``."""
        return any(self.stats.applies(name, site) for name in self._others)

    def measure_updates(self) -> None:
        """Queue ``param_update`` of every trained parameter (call under ``torch.no_grad()`` right after
        ``optimizer.step()``, and after :meth:`keep`)."""
        if not self._fresh:
            return
        self._fresh = False
        counted = [i in self._kept for i in self.trained]
        names = [self.params[i][0] for i in self.trained]
        modules = [self.modules[i] for i in self.trained]
        # W_t − W_{t+1} in place where the whole of it is kept (a norm does not see the sign); a subset's
        # difference is measured by add_many against the parameter (torch.dist), not written into the buffer
        whole = [i for i in self.trained if i in self._kept and (not self.batched or self.subsets.is_whole(i))]
        if whole:
            torch._foreach_sub_([self._kept[i] for i in whole],
                                [self.subsets.view(i, self.params[i][1], "param") for i in whole])
        if self.batched:
            alone = set(whole)
            tensors: list[torch.Tensor] = []
            minus: list[torch.Tensor | None] = []
            for i in self.trained:
                if i in alone:  # the difference itself
                    tensors.append(self._flat[i])
                    minus.append(None)
                elif i in self._kept:  # W_t's kept entries, against W_{t+1}'s
                    tensors.append(self._kept[i])
                    minus.append(self.subsets.view(i, self.params[i][1], "param"))
                else:  # not counted on this rank
                    tensors.append(self.params[i][1])
                    minus.append(None)
            self.stats.add_many(names, "param_update", tensors, modules, counted, minus)
            if whole and self._applies("param_update"):
                torch._foreach_neg_([self._kept[i] for i in whole])  # W_{t+1} − W_t for probes that see the sign
                for i in whole:
                    self.stats.add(self.params[i][0], "param_update", self._kept[i], self.modules[i], reduced=False)
            return
        if whole:
            torch._foreach_neg_([self._kept[i] for i in whole])  # W_{t+1} − W_t for probes that may see the sign
        for i, name, module in zip(self.trained, names, modules, strict=True):
            if i in self._kept:
                self.stats.add(name, "param_update", self._kept[i], module)

    def kept_entries(self) -> int:
        """How many entries are kept between a step's start and its end (the memory updates cost)."""
        return sum(t.numel() for t in self._kept.values())

    def release(self) -> None:
        """Drop the kept values (recording is over)."""
        self._kept.clear()
        self._flat.clear()
        self.subsets.release()
