"""The step recorder both loops share: it attaches to a model and its optimizer and measures one training step
at a time, in whatever loop trains them — coordscope's own (:mod:`coordscope.job`) or yours
(:func:`coordscope.recording`).

What it measures, and when (DESIGN.md, "Steps"; step t is the model after t optimizer updates):

- **Forward sites** (``act``, ``act_delta``, ``act_grad``, ``<output>``, ``<loss>``) on the *fixed batch*: the
  ``batch`` given, else the inputs of the first forward call of the model (the outermost module call) once
  recording has started. When a forward call of the loop at step t gets exactly those inputs (the same
  tensors, or equal values), it is measured as it runs — a coord-check loop pays nothing more. When it does
  not (a real loop's batches change), one extra pass on the fixed batch runs after the loop's backward and
  before the optimizer changes anything, so with the step-t parameters: a forward pass, and, when a loss
  is known, a backward to the activations only (``torch.autograd.grad``, so no parameter's ``.grad``
  moves), with the random number generators and BatchNorm running statistics put back as they were.
  The loss of an extra pass is ``loss(model, batch)`` when both were given, else the model's own loss
  (a scalar output, or a ``.loss`` as Hugging Face models return given labels); without one, that step
  has no ``act_grad`` or ``<loss>`` rows.
- **Parameter sites**: ``param`` (W_t) and ``param_grad`` — the gradient the optimizer is about to use, so
  after gradient accumulation, clipping and DDP's averaging — right before the update; ``param_update``
  (W_{t+1} − W_t) right after it (:class:`coordscope.stats.ParameterSites`, no copy of the model).
  Both come from the optimizer's own step hooks; an optimizer stepped with a closure (LBFGS, Lightning)
  is measured after the closure has run the loop's forward and backward.

Under torchrun every rank records; :class:`coordscope.stats.StepStats` combines the ranks in one collective
per step. Whether an extra pass runs must then be the same on every rank (under FSDP2 a forward pass is a
collective): at step t it runs unless every rank's loop forward was on its fixed batch at step t − 1 (the
flags travel in that step's collective), so a loop on a fixed batch pays for extra passes at most once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils.hooks import RemovableHandle

from coordscope.distributed import World, unwrap
from coordscope.errors import ConfigError
from coordscope.outputs import LOSS, OUTPUT
from coordscope.probe import Probe
from coordscope.record import Recorder, module_type_name
from coordscope.roles import Layer, module_owner
from coordscope.sampling import SAMPLE
from coordscope.spec import as_loss, set_mode
from coordscope.stats import ParameterSites, StepStats
from coordscope.taps import SdpaTap, sdpa_callers

LossFn = Callable[[nn.Module, Any], torch.Tensor]
NAME_SITES = ("param", "param_grad", "param_update")


def inner_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The ``torch.optim.Optimizer`` under wrappers that step it (Hugging Face accelerate's
    ``AcceleratedOptimizer``, Lightning's ``LightningOptimizer``): its step hooks are the ones that run."""
    seen = 0
    while seen < 8:
        inner = getattr(optimizer, "optimizer", None) or getattr(optimizer, "_optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer) or inner is optimizer:
            break
        optimizer, seen = inner, seen + 1
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    return optimizer


def parameter_modules(model: nn.Module) -> dict[str, str]:
    """The class name of the module owning each parameter (``Parameter`` for one the model holds itself)."""
    owners: dict[str, str] = {}
    for module_name, module in model.named_modules():
        for name, _ in module.named_parameters(recurse=False):
            owners[f"{module_name}.{name}" if module_name else name] = module_type_name(module)
    return owners


def _detached_clone(value: Any) -> Any:
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


class _Inputs:
    """The fixed batch's forward inputs, and whether a forward call's inputs are the same.

    Equal means the same structure and equal values; the tensors a loop passes again unchanged (same
    object, same version counter) are recognised without reading them, so a GPU is not synchronised."""

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.leaves, self.spec = pytree.tree_flatten(pytree.tree_map(_detached_clone, (args, kwargs)))
        self._known: dict[int, tuple[torch.Tensor, int]] = {}

    def call(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        args, kwargs = pytree.tree_unflatten(self.leaves, self.spec)
        return tuple(args), dict(kwargs)

    def same(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        leaves, spec = pytree.tree_flatten((args, kwargs))
        if spec != self.spec:
            return False
        for i, (mine, theirs) in enumerate(zip(self.leaves, leaves, strict=True)):
            if isinstance(mine, torch.Tensor):
                if not isinstance(theirs, torch.Tensor):
                    return False
                known = self._known.get(i)
                if known is not None and known[0] is theirs and known[1] == theirs._version:
                    continue
                if (mine.shape != theirs.shape or mine.dtype != theirs.dtype or mine.device != theirs.device
                        or not torch.equal(mine, theirs.detach())):
                    return False
                self._known[i] = (theirs, theirs._version)  # a strong reference: its id cannot be reused
            else:
                try:
                    if not bool(mine == theirs):
                        return False
                except Exception:
                    return False
        return True


@contextmanager
def _side_effects_undone(model: nn.Module) -> Iterator[None]:
    """Put back what a forward pass in train mode changes: the random number generators (dropout) and the
    running statistics of BatchNorm layers, so an extra pass leaves the user's training as it was."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats]
    saved = [(m, {k: b.detach().clone() for k, b in m._buffers.items() if b is not None}) for m in norms]
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            with torch.no_grad():
                for module, buffers in saved:
                    for key, value in buffers.items():
                        module._buffers[key].copy_(value)  # type: ignore[union-attr]


class LoopRecorder:
    """Measures ``model`` and ``optimizer`` in any training loop, one step at a time (see the module
    docstring); use as a context manager and call :meth:`step` after every optimizer step.

    ``layers``: roles known in advance (a spec's :func:`coordscope.layers.infer_layers`), else roles are
    what a name alone says until the run has two widths. ``steps``: record steps 0..steps, then detach.
    ``note_shapes``: keep, from step 0, what the own-loop store needs to infer roles across jobs
    (:attr:`noted`).
    """

    def __init__(self, model: nn.Module, optimizer: Any, *, probes: Mapping[str, Probe], width: int,
                 layers: Mapping[str, Layer] | None = None, batch: Any = None, loss: LossFn | None = None,
                 steps: int | None = None, sample: int | None = SAMPLE, exact: bool = False,
                 world: World | None = None, note_shapes: bool = False) -> None:
        self.model = unwrap(model)
        self.optimizer = inner_optimizer(optimizer)
        self.world = world
        self.width = width
        self.max_steps = steps
        self.batch = None if batch is None else pytree.tree_map(_detached_clone, batch)
        self.loss_fn = loss
        self.note_shapes = note_shapes
        self.params = list(self.model.named_parameters())
        self.param_modules = parameter_modules(self.model)
        self.stats = StepStats(probes, layers or {}, width, sample=sample, exact=exact, world=world)
        self.parameters = ParameterSites(self.params, self.stats, self.param_modules, world)
        if world is not None:
            self.stats.declare((name, site, probe, self.param_modules.get(name, "Parameter"))
                               for name, _ in self.params for site in NAME_SITES for probe in probes)
        self.step_index = 0
        self.done = False
        self.noted: dict[str, tuple[str, tuple[int, ...], bool, bool]] = {}
        """From step 0: name → (module type, shape, whether a module owns it, same values as ``<output>``)."""
        self._callers: set[str] | None = sdpa_callers(layers) if layers else None
        self._fixed: _Inputs | None = None
        self._fixed_name = ""
        self._expect_own = batch is None
        self._reset_step()
        self._recorder: Recorder | None = None
        self._stack = ExitStack()
        self._handles: list[RemovableHandle] = []
        self._sdpa: list[SdpaTap] = []
        self._step0_acts: dict[str, torch.Tensor] = {}
        self._targets: list[torch.Tensor] = []
        self._extra = False

    def _reset_step(self) -> None:
        self._measured = False  # this step's forward sites are queued
        self._own_seen = False  # the loop's own forward got the fixed batch this step
        self._stepped = False  # the optimizer stepped
        self._prepared = False  # parameters and gradients are queued
        self._extra_ran = False  # an extra pass measured the forward sites
        self._loss: torch.Tensor | None = None

    # -- attaching --------------------------------------------------------------------------------------

    def __enter__(self) -> LoopRecorder:
        set_mode(self.optimizer, train=True)  # ScheduleFree's optimizers refuse to step in eval mode
        try:
            blocks = {n for n, m in self.model.named_modules()
                      if n and n in self.stats.layers and next(m.children(), None)}
            self._recorder = Recorder(self.model, self._sink, gate=self._gate, on_gated_exit=self._gated_exit,
                                      extra=blocks)  # modules with children recorded at inference: depth blocks
            self._stack.enter_context(self._recorder)
            self._handles.append(self.optimizer.register_step_pre_hook(self._before_update))
            self._handles.append(self.optimizer.register_step_post_hook(self._after_update))
            if self._callers:
                self._scope_sdpa(self._callers)
        except BaseException:
            self.detach()
            raise
        self.stats.begin(0)
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def detach(self) -> None:
        """Remove every hook and free the kept values; the model and optimizer are as before."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        while self._sdpa:
            self._sdpa.pop().__exit__(None, None, None)
        self._stack.close()
        self._recorder = None
        self.parameters.release()
        self.stats.initial.clear()
        self._step0_acts.clear()

    def _scope_sdpa(self, callers: set[str]) -> None:
        """Attention logits: :class:`SdpaTap` active inside the modules that call SDPA, during measured
        passes only (a whole forward under a torch function mode costs 1.18× instead of 1.05×)."""
        modules = dict(self.model.named_modules())
        targets = [modules[name] for name in callers if name in modules] or [self.model]

        def enter(module: nn.Module, args: Any) -> None:
            # one mode at a time: a caller inside another would see every SDPA call twice
            if self._recorder is not None and self._recorder.enabled and not self._sdpa:
                self._sdpa.append(SdpaTap())
                self._sdpa[-1].__enter__()
                module._coordscope_sdpa = True  # type: ignore[assignment]

        def leave(module: nn.Module, args: Any, output: Any) -> None:
            if getattr(module, "_coordscope_sdpa", False) and self._sdpa:
                module._coordscope_sdpa = False  # type: ignore[assignment]
                self._sdpa.pop().__exit__(None, None, None)

        for module in targets:
            self._handles.append(module.register_forward_pre_hook(enter))
            self._handles.append(module.register_forward_hook(leave, prepend=True, always_call=True))

    # -- forward passes ---------------------------------------------------------------------------------

    def _gate(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Whether the forward call starting now is measured (see the module docstring). The fixed batch's
        call is the model's own (or, in an extra pass, the first module call ``loss(model, batch)`` makes,
        as when a Lightning ``training_step`` calls ``self.model(x)``); calls of other modules from outside
        the model, with whatever inputs, are never it."""
        if self.done:
            return False
        if self._extra:
            if self._measured:
                return False
            if self._fixed is None:
                self._fixed, self._fixed_name = _Inputs(args, kwargs), name
            elif name != self._fixed_name:
                return False
            return self._begin_pass()
        if self._measured or self._stepped or self._prepared:
            return False
        if self._fixed is None:
            if self.batch is not None or name != "":
                return False  # a given batch's inputs are learned in the first extra pass
            self._fixed, self._fixed_name = _Inputs(args, kwargs), name
        elif name != self._fixed_name or not self._fixed.same(args, kwargs):
            return False
        self._own_seen = True
        if self.world is not None and not self._expect_own:
            return False  # the ranks agreed on an extra pass this step
        return self._begin_pass()

    def _begin_pass(self) -> bool:
        if self._callers is None and self.step_index == 0:  # find out which modules call SDPA
            self._sdpa.append(SdpaTap())
            self._sdpa[-1].__enter__()
        return True

    def _gated_exit(self, output: Any) -> None:
        if self._callers is None and self.step_index == 0 and self._sdpa:
            self._sdpa.pop().__exit__(None, None, None)
        self._measured = True
        loss = as_loss(output)
        if loss is not None:
            self._loss = loss.detach()
        if self.note_shapes and self.step_index == 0:
            self._note_output(output)

    def _sink(self, name: str, site: str, tensor: torch.Tensor, module_type: str) -> None:
        if site == "act":
            if self._extra and tensor.requires_grad:
                self._targets.append(tensor)
            if self.note_shapes and self.step_index == 0 and name not in self.noted:
                self._step0_acts[name] = tensor
                shape = tuple(tensor.shape)
                if self.world is not None and shape:  # every rank holds an equal share of the batch
                    shape = (shape[0] * self.world.size, *shape[1:])
                owned = module_owner(name) in self._module_names()
                self.noted[name] = (module_type, shape, owned, name == OUTPUT)
        if self._sdpa:  # inside an SdpaTap: the statistics' own torch calls need not go through its Python
            with torch._C.DisableTorchFunction():
                self.stats.activation(name, site, tensor, module_type)
        else:
            self.stats.activation(name, site, tensor, module_type)

    def _module_names(self) -> set[str]:
        names = getattr(self, "_names_cache", None)
        if names is None:
            names = self._names_cache = {name for name, _ in self.model.named_modules()}
        return names

    def _note_output(self, output: Any) -> None:
        """Which step-0 activations hold the same values as ``<output>`` (:attr:`Layer.rescaled` is the
        opposite): compared by entry count, sum and sum of squares."""
        from coordscope.layers import fingerprint, same_values

        out = self._step0_acts.get(OUTPUT)
        if out is not None:
            reference = fingerprint(out)
            for name, tensor in self._step0_acts.items():
                module_type, shape, owned, _ = self.noted[name]
                same = tensor.numel() == out.numel() and same_values(fingerprint(tensor), reference)
                self.noted[name] = (module_type, shape, owned, same)
        self._step0_acts.clear()

    def _extra_pass(self) -> None:
        """Measure the fixed batch with the current parameters (see the module docstring)."""
        if self.batch is None and self._fixed is None:
            return  # no forward pass seen yet: nothing to repeat
        self._extra, self._targets = True, []
        try:
            with _side_effects_undone(self.model), torch.enable_grad():
                if self.batch is not None and self.loss_fn is not None:
                    loss: Any = self.loss_fn(self.model, self.batch)
                else:
                    assert self._fixed is not None or self.batch is not None
                    if self._fixed is None:  # a batch without a loss: call the model on it as a spec would
                        from coordscope.spec import model_output

                        output = model_output(self.model, self.batch)
                    else:
                        args, kwargs = self._fixed.call()
                        output = dict(self.model.named_modules())[self._fixed_name](*args, **kwargs)
                    loss = as_loss(output)
                if isinstance(loss, torch.Tensor) and loss.dim() == 0:
                    self._loss = loss.detach()
                    targets = [t for t in self._targets if t.grad_fn is not None]
                    if loss.requires_grad and targets:
                        torch.autograd.grad(loss, targets, allow_unused=True)  # fires the act_grad hooks
        finally:
            self._extra, self._targets = False, []
            self._measured = self._extra_ran = True

    # -- the optimizer's step ---------------------------------------------------------------------------

    def _before_update(self, optimizer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.done:
            return None
        if self._stepped:
            raise ConfigError("coordscope: the optimizer stepped twice since the last rec.step(); call "
                              "rec.step() after every optimizer step")
        with torch.no_grad():
            self.parameters.keep()
        closure = args[1] if len(args) > 1 else kwargs.get("closure")
        if closure is None:
            self._after_backward()
            return None

        def measured_closure() -> Any:
            result = closure()
            if not self._prepared:
                self._after_backward()
            return result

        return (args[0], measured_closure, *args[2:]), {k: v for k, v in kwargs.items() if k != "closure"}

    def _after_backward(self) -> None:
        """The loop's forward and backward of this step are done and the parameters are still W_t."""
        self._prepared = True
        if self.world is not None:
            if not self._expect_own:
                self.stats.discard_forward()
                self._measured = False
                self._extra_pass()
        elif not self._measured:
            self._extra_pass()
        with torch.no_grad():
            self.parameters.measure()

    def _after_update(self, optimizer: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.done:
            return
        with torch.no_grad():
            self.parameters.measure_updates()
        self._stepped = True

    # -- closing a step ---------------------------------------------------------------------------------

    def step(self, loss: torch.Tensor | None = None) -> dict[str, Any] | None:
        """Close step t: its rows as columns (every rank gets them under torchrun), or None once
        recording has stopped. ``loss``: the loop's loss of this step, recorded as ``<loss>`` when the
        forward sites came from the loop's own pass and the model's output carried no loss."""
        if self.done:
            return None
        if not self._prepared:  # no optimizer step since the last call (a skipped AMP step)
            self._after_backward()
        value = self._loss
        if loss is not None and self._own_seen and self._measured and not self._extra_ran:
            value = loss.detach()  # the loop's own loss of the fixed batch
        if isinstance(value, torch.Tensor) and value.dim() == 0:
            self.stats.add(LOSS, "loss", value, "<loss>")
        if self._callers is None and self.step_index == 0:
            self._callers = {re.sub(r"#\d+$", "", name).rpartition(".")[0] for name in self.stats.recorded_taps()
                             if name.split("#")[0].endswith("attn_logits")}
            if self._callers:
                self._scope_sdpa(self._callers)
        self.stats.own_forward = self._own_seen
        rows = self.stats.end()
        self._expect_own = self.stats.all_own_forward
        self.step_index += 1
        self._reset_step()
        self.stats.begin(self.step_index)
        if self.max_steps is not None and self.step_index > self.max_steps:
            self.done = True
            self.detach()
        return rows
