"""The recorder: hooks that hand every activation, and its gradient, to a sink while a model runs.

One :class:`Recorder` wraps one model for one job. Entering it registers, once, a forward hook on every leaf
module and every module with parameters of its own (its output, tensors inside tuples and dicts included), on
the model itself (``<output>``) and a pre-hook on every module to know which module is running (so taps can be
named after their caller). Leaving it removes every hook — also when the forward or the loss raised — so a
model is never left instrumented. A recorder can be switched off and on while inside
(:attr:`Recorder.enabled`): the hooks stay, but pass every tensor by, and taps see no active recorder — the
own-loop recorder measures only the forward passes on its fixed batch. What happens to a tensor is the sink's
business (:mod:`coordscope.job` computes probe statistics; :mod:`coordscope.layers` only notes shapes), which
keeps this module free of any statistics.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from coordscope.outputs import OUTPUT, main_output, named_tensors

Sink = Callable[[str, str, torch.Tensor, str], None]
"""``sink(name, site, tensor, module_type)`` with site ``act`` or ``act_grad``."""
Gate = Callable[[str, tuple[Any, ...], dict[str, Any]], bool]
"""``gate(module_name, args, kwargs)``: asked, while the recorder is switched off, at the start of every
outermost module call; True records that call (the recorder is on until it returns)."""

_ACTIVE: list[Recorder] = []


def active_recorder() -> Recorder | None:
    """The recorder of the job running now, if any (taps use it)."""
    return _ACTIVE[-1] if _ACTIVE else None


class Recorder:
    """Context manager: while inside, every leaf module output and ``<output>`` of ``model`` goes to
    ``sink`` as ``act``, and, when ``grads`` is true, its gradient as ``act_grad`` during backward.

    A module called more than once in one forward pass is recorded as ``name``, ``name#1``, ``name#2``…
    ``extra`` names modules with children whose output is recorded too (a depth sweep's residual blocks).

    With a ``gate`` the recorder starts switched off and records only the outermost module calls the gate
    accepts: their output is ``<output>`` (whether it is the model's or, when code calls a submodule
    directly, that submodule's), and ``on_gated_exit(output)`` runs when such a call returns.
    """

    def __init__(self, model: nn.Module, sink: Sink, grads: bool = True, enabled: bool = True,
                 gate: Gate | None = None, on_gated_exit: Callable[[Any], None] | None = None,
                 extra: Collection[str] = ()) -> None:
        self.model = model
        self.extra = frozenset(extra)  # non-leaf modules recorded too (a depth sweep's blocks)
        self.sink = sink
        self.grads = grads
        self.gate = gate
        self.on_gated_exit = on_gated_exit
        self._gated: str | None = None
        self._enabled = enabled and gate is None
        self._inside = False
        self._handles: list[RemovableHandle] = []
        self._stack: list[str] = []
        self._calls: Counter[str] = Counter()

    @property
    def enabled(self) -> bool:
        """Whether module outputs and taps are recorded now (the hooks stay installed either way)."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = value
        if self._inside and value and self not in _ACTIVE:
            _ACTIVE.append(self)
        elif not value and self in _ACTIVE:
            _ACTIVE.remove(self)

    def __enter__(self) -> Recorder:
        try:
            for name, module in self.model.named_modules():
                self._handles.append(module.register_forward_pre_hook(self._enter_module(name), with_kwargs=True))
                self._handles.append(module.register_forward_hook(self._leave_module(name, module),
                                                                  always_call=True))
        except BaseException:
            self.remove()
            raise
        self._inside = True
        if self._enabled:
            _ACTIVE.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook this recorder registered and stop being the active recorder."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._stack.clear()
        self._gated = None
        self._inside = False
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    def current_module(self) -> str:
        """Qualified name of the innermost module whose forward is running ('' for the model itself)."""
        return self._stack[-1] if self._stack else ""

    def _unique(self, name: str) -> str:
        count = self._calls[name]
        self._calls[name] += 1
        return name if count == 0 else f"{name}#{count}"

    def _enter_module(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, kwargs: Any) -> None:
            if name == "":
                self._stack.clear()
            if not self._stack:  # an outermost call: a forward pass begins
                self._calls.clear()
                if self.gate is not None and not self._enabled and self.gate(name, args, kwargs):
                    self._gated = name
                    self.enabled = True
            self._stack.append(name)

        return hook

    def _leave_module(self, name: str, module: nn.Module) -> Callable[..., None]:
        # A module with parameters of its own computes with them (a mixture of experts holding its experts'
        # weights beside its router): its output is recorded as a leaf's is.
        is_leaf = (next(module.children(), None) is None or name in self.extra
                   or next(module.parameters(recurse=False), None) is not None)
        module_type = module_type_name(module)

        def hook(mod: nn.Module, args: Any, output: Any) -> None:
            if self._stack and self._stack[-1] == name:
                self._stack.pop()
            if not self._enabled:
                return
            if self.gate is not None and name == self._gated and not self._stack:
                tensor = main_output(output)
                if tensor is not None:
                    self.observe(OUTPUT, tensor, "<output>")
                self._gated = None
                self.enabled = False
                if self.on_gated_exit is not None:
                    self.on_gated_exit(output)
            elif self.gate is None and name == "":
                tensor = main_output(output)
                if tensor is not None:
                    self.observe(OUTPUT, tensor, "<output>")
            elif is_leaf:
                for tensor_name, tensor in named_tensors(output, self._unique(name)):
                    self.observe(tensor_name, tensor, module_type)

        return hook

    def observe(self, name: str, tensor: torch.Tensor, module_type: str) -> None:
        """Send ``tensor`` to the sink as ``act``, and hook its gradient as ``act_grad``."""
        self.sink(name, "act", tensor, module_type)
        if self.grads and tensor.requires_grad:
            tensor.register_hook(lambda grad: self.sink(name, "act_grad", grad, module_type))

    def emit(self, name: str, tensor: torch.Tensor) -> None:
        """Record a tap: ``tensor`` under ``<current module>.<name>``."""
        if not self._enabled:
            return
        module = self.current_module()
        self.observe(self._unique(f"{module}.{name}" if module else name), tensor, "tap")


def module_type_name(module: nn.Module) -> str:
    """The class name a module is recorded under. FSDP2's ``fully_shard`` swaps a module's class for a
    generated ``FSDP<Name>`` subclass; the name is that of the class it wraps, so a sharded and an unsharded
    run of one model record the same module names."""
    cls = type(module)
    if cls.__name__.startswith("FSDP"):
        for base in cls.__mro__[1:]:
            if not base.__name__.startswith("FSDP") and issubclass(base, nn.Module):
                return base.__name__
    return cls.__name__
