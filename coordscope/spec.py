"""What the user hands coordscope: how to build the model at a width, the data, the loss and optimizer.

A spec is a Python file, an importable module, ``module:attr``, a sample's short name, or a
:class:`Spec` object. Loading one never runs the model; :func:`build_model` does, and turns a failure into
a one-line :class:`SpecError` naming the spec and the width.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from coordscope.errors import CoordscopeError, SpecError
from coordscope.sample_models import SAMPLES  # the registry only: a table of names, no model code

ModelFn = Callable[..., nn.Module]  # model(width), model(width, depth), model(width, d_ff=…): see Spec
BatchesFn = Callable[[], Iterable[Any]]
LossFn = Callable[[nn.Module, Any], torch.Tensor]
OptimizerFn = Callable[[nn.Module, float], torch.optim.Optimizer]


@dataclass(frozen=True)
class Spec:
    """A model family indexed by width, with its data, loss and optimizer.

    ``model(width)`` builds the model (``model(width, depth)`` when depth is swept, ``model(width, d_ff=v)``
    when a declared dimension is swept); ``batches()`` yields
    batches (the coord check uses the first one at every step); ``loss(model, batch)`` defaults to
    :func:`default_loss`; ``optimizer(model, lr)`` defaults to Adam over all parameters. ``defaults`` may
    hold ``widths``, ``depths``, ``steps``, ``seeds``, ``lr``.
    ``heldout()`` (optional) yields the held-out batches an LR sweep scores every job on at the end.
    ``ref`` is how the spec was named, so a run can record where it came from.
    ``dimensions`` (``DIMENSIONS`` in a spec file) declares the other sizes ``model`` takes as keyword
    arguments, each with the values a sweep of it uses by default: ``{"d_ff": (64, 128, 256, 512)}``.
    Sweeping one of them (``--dim d_ff``) keeps the width fixed and fits against that dimension alone
    (docs/dimensions.md).
    """

    model: ModelFn
    batches: BatchesFn
    loss: LossFn | None = None
    optimizer: OptimizerFn | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    ref: str = "<object>"
    description: str = ""
    heldout: BatchesFn | None = None
    dimensions: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def compute_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """The spec's loss, or :func:`default_loss`."""
        fn = self.loss or default_loss
        return fn(model, batch)

    def make_optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        """The spec's optimizer, or Adam over every trainable parameter."""
        if self.optimizer is not None:
            return self.optimizer(model, lr)
        return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)


def model_output(model: nn.Module, batch: Any) -> Any:
    """Call the model the way the default loss does: ``model(x)`` for ``(x, y)``, ``model(**batch)`` for dicts."""
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(batch[0])
    return model(batch)


def as_loss(output: Any) -> torch.Tensor | None:
    """The loss inside a model output: a scalar tensor, or an object/dict with a ``loss``; else None."""
    if isinstance(output, torch.Tensor):
        return output if output.dim() == 0 else None
    loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
    return loss if isinstance(loss, torch.Tensor) and loss.dim() == 0 else None


def default_loss(model: nn.Module, batch: Any) -> torch.Tensor:
    """Cross-entropy of ``model(x)`` against ``y``, unless the model already returns its loss.

    A model output that is a scalar tensor, or has a ``.loss`` (Hugging Face style), is used as is.
    """
    output = model_output(model, batch)
    loss = as_loss(output)
    if loss is not None:
        return loss
    if not (isinstance(batch, (tuple, list)) and len(batch) >= 2 and isinstance(output, torch.Tensor)):
        raise SpecError(
            "the default loss needs (x, y) batches and a tensor output, or a model that returns its loss; "
            "define loss(model, batch) in the spec"
        )
    target = batch[1]
    return nn.functional.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1))


def _from_namespace(ns: Any, ref: str) -> Spec:
    """A Spec from anything with ``model``/``batches`` attributes (a module, a class, a SimpleNamespace)."""
    if isinstance(ns, Spec):
        return ns if ns.ref != "<object>" else replace(ns, ref=ref)
    missing = [n for n in ("model", "batches") if not callable(getattr(ns, n, None))]
    if missing:
        raise SpecError(f"spec {ref!r} does not define {' and '.join(f'{n}()' for n in missing)} "
                        "(a spec needs model(width) and batches())")
    defaults = getattr(ns, "DEFAULTS", {}) or {}
    if not isinstance(defaults, Mapping):
        raise SpecError(f"spec {ref!r}: DEFAULTS must be a dict, got {type(defaults).__name__}")
    return Spec(
        dimensions=declared_dimensions(getattr(ns, "DIMENSIONS", None) or {}, ref),
        model=ns.model,
        batches=ns.batches,
        loss=getattr(ns, "loss", None),
        optimizer=getattr(ns, "optimizer", None),
        defaults=dict(defaults),
        ref=ref,
        description=(getattr(ns, "__doc__", "") or "").strip().split("\n")[0],
        heldout=getattr(ns, "heldout", None),
    )


def declared_dimensions(declared: Any, ref: str) -> dict[str, tuple[int, ...]]:
    """A spec's ``DIMENSIONS``: a dict from keyword-argument names of ``model`` to the values a sweep of that
    dimension uses by default (a list of positive integers, possibly empty: then ``--dim NAME=V1,V2,…``
    must give them)."""
    if not isinstance(declared, Mapping):
        raise SpecError(f"spec {ref!r}: DIMENSIONS must be a dict from names to lists of sizes, "
                        f"got {type(declared).__name__}")
    out: dict[str, tuple[int, ...]] = {}
    for name, values in declared.items():
        if not isinstance(name, str) or not name.isidentifier() or name in ("width", "depth"):
            raise SpecError(f"spec {ref!r}: DIMENSIONS key {name!r} is not a keyword-argument name of model() "
                            "(width and depth have their own flags)")
        if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
            raise SpecError(f"spec {ref!r}: DIMENSIONS[{name!r}] must be a list of positive integers, got {values!r}")
        out[name] = tuple(values)
    return out


def import_file(path: Path) -> ModuleType:
    """Import a user's Python file (a spec or a probe) under a private name. Its folder goes on
    ``sys.path`` first, as ``python file.py`` would put it, so that a spec can import the helper modules
    that sit beside it (``from mymodels import build``)."""
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = f"coordscope_user_spec_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise SpecError(f"spec {str(path)!r} is not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file raised while importing
        del sys.modules[name]
        raise SpecError(f"spec {str(path)!r} failed to import: {type(exc).__name__}: {exc}") from exc
    return module


def _import_module(name: str, ref: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise SpecError(
                f"spec {ref!r} is not a file, an importable module or a sample (see `coordscope samples`)"
            ) from exc
        raise SpecError(f"spec {ref!r} failed to import: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise SpecError(f"spec {ref!r} failed to import: {type(exc).__name__}: {exc}") from exc


def load_spec(ref: str | Spec) -> Spec:
    """Resolve a spec reference: a Spec, a sample name, a ``.py`` file, ``module`` or ``module:attr``."""
    if isinstance(ref, Spec):
        return ref
    if not isinstance(ref, str) or not ref.strip():
        raise SpecError("no spec given (a file, a module, module:attr or a sample name)")
    if ref in SAMPLES:
        return replace(load_spec(SAMPLES[ref].target), ref=ref)
    target, _, attr = ref.partition(":")
    path = Path(target)
    if target.endswith(".py") or path.is_file():
        if not path.is_file():
            raise SpecError(f"spec file {target!r} does not exist")
        module: ModuleType = import_file(path)
    else:
        module = _import_module(target, ref)
    if attr:
        if not hasattr(module, attr):
            raise SpecError(f"spec {ref!r}: {target} has no attribute {attr!r}")
        obj = getattr(module, attr)
        return _from_namespace(obj, ref)
    return _from_namespace(module, ref)


def build_model(spec: Spec, width: int, depth: int | None = None,
                dims: Mapping[str, int] | None = None) -> nn.Module:
    """``spec.model(width)`` — ``spec.model(width, depth)`` when depth is swept, ``spec.model(width, d_ff=v)``
    when a declared dimension is — with any failure turned into one line naming the call."""
    positional = (width,) if depth is None else (width, depth)
    keywords = dict(dims or {})
    call = "model(" + ", ".join([*map(str, positional), *(f"{k}={v}" for k, v in keywords.items())]) + ")"
    try:
        model = spec.model(*positional, **keywords)
    except Exception as exc:
        if depth is not None and isinstance(exc, TypeError) and "positional argument" in str(exc):
            raise SpecError(f"spec {spec.ref!r}: a depth sweep calls model(width, depth), but {call} raised "
                            f"TypeError: {exc}") from exc
        if keywords and isinstance(exc, TypeError) and "keyword argument" in str(exc):
            raise SpecError(f"spec {spec.ref!r}: a dimension sweep calls {call}, but model() takes no such "
                            f"keyword: {exc}") from exc
        raise SpecError(f"spec {spec.ref!r}: {call} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise SpecError(f"spec {spec.ref!r}: {call} returned {type(model).__name__}, not an nn.Module")
    return model


def first_batch(spec: Spec) -> Any:
    """The first batch of ``spec.batches()``: the fixed batch of a coordinate check."""
    try:
        return next(iter(spec.batches()))
    except StopIteration:
        raise SpecError(f"spec {spec.ref!r}: batches() yielded nothing") from None
    except Exception as exc:
        raise SpecError(f"spec {spec.ref!r}: batches() raised {type(exc).__name__}: {exc}") from exc


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


def make_optimizer(spec: Spec, model: nn.Module, lr: float, width: int) -> torch.optim.Optimizer:
    """The spec's optimizer, in train mode, with a failure turned into one line naming the spec and width.

    Optimizers with a train/eval protocol (ScheduleFree's, which refuse to step until ``train()`` was
    called) are put in train mode: a coordinate check then measures the weights gradients are taken at
    (ScheduleFree's y); an LR sweep switches to ``eval()`` for its held-out score (the averaged x).
    """
    try:
        optimizer = spec.make_optimizer(model, lr)
        set_mode(optimizer, train=True)
        return optimizer
    except CoordscopeError:
        raise
    except Exception as exc:
        raise SpecError(f"spec {spec.ref!r}: optimizer(model, {lr:g}) raised at width {width}: "
                        f"{type(exc).__name__}: {exc}") from exc


def set_mode(optimizer: torch.optim.Optimizer, *, train: bool) -> None:
    """Call the optimizer's ``train()`` or ``eval()`` where it has one (ScheduleFree); others have no mode."""
    switch = getattr(optimizer, "train" if train else "eval", None)
    if callable(switch):
        switch()


def rehearse(spec: Spec, width: int, lr: float, batch: Any, depth: int | None = None,
             dims: Mapping[str, int] | None = None) -> str:
    """One training step of ``spec`` at ``width`` on ``batch`` — model, loss, backward and the optimizer's
    step — so that an exception from the user's code is one line *before* a run directory exists, not a
    half-made run. Returns the optimizer's class name, which the run records."""
    from coordscope.device import seed_everything

    seed_everything(0)
    model = build_model(spec, width, depth, dims)
    model.train()
    optimizer = make_optimizer(spec, model, lr, width)
    checked_loss(spec, model, batch, width, 0).backward()
    optimizer_step(spec, optimizer, width, 0)
    return type(optimizer).__name__


def optimizer_step(spec: Spec, optimizer: torch.optim.Optimizer, width: int, step: int) -> None:
    """``optimizer.step()``, with a failure of the user's optimizer turned into one line."""
    try:
        optimizer.step()
    except CoordscopeError:
        raise
    except Exception as exc:
        raise SpecError(f"spec {spec.ref!r}: the optimizer's step() raised at width {width}, step {step}: "
                        f"{type(exc).__name__}: {exc}") from exc
