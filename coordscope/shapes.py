"""Which dimensions of each tensor grow with width, and the role that gives each named tensor.

μP treats a weight by how its two dimensions scale: *input-like* (only fan-out grows: embeddings, the
first layer), *hidden* (both), *output-like* (only fan-in: the readout), *vector-like* (a 1-D parameter
that grows: biases, norm gains) and *fixed* (nothing grows). Nobody has to declare this: coordscope builds
the model at the two smallest widths of the run, runs one forward pass on the first batch, and compares the
shapes. A parameter that carries the ``mup`` package's ``infshape`` is read from it instead, so models built
with ``set_base_shapes`` are classified the way ``mup`` itself sees them.

An activation takes the role of the module that produced it (the role of its ``weight``), else ``hidden``
when one of its dimensions grows, else ``fixed``; the model's own output is ``output``; tap names ending in
``attn_logits`` are ``attn_logits``; the loss is ``loss``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from coordscope.spec import Spec, build_model, first_batch

OUTPUT = "<output>"
LOSS = "<loss>"


@dataclass(frozen=True)
class Layer:
    """What a recorded name is: its role, the module class, its shape at the smallest width, and for each
    dimension whether it grows with width."""

    role: str
    module: str
    shape: tuple[int, ...]
    scaling_dims: tuple[bool, ...]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "shape": list(self.shape), "scaling_dims": list(self.scaling_dims)}

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Layer:
        return Layer(str(data["role"]), str(data["module"]), tuple(data["shape"]), tuple(data["scaling_dims"]))


def weight_role(scaling: tuple[bool, ...], module: nn.Module | None = None) -> str:
    """The μP role of a parameter from which of its dimensions grow ([fan_out, fan_in, …] convention;
    ``nn.Embedding`` stores [vocab, width], i.e. fan-in first)."""
    if len(scaling) == 0:
        return "fixed"
    if len(scaling) == 1:
        return "vector" if scaling[0] else "fixed"
    fan_out, fan_in = scaling[0], scaling[1]
    if isinstance(module, nn.Embedding):
        fan_out, fan_in = fan_in, fan_out
    if fan_out and fan_in:
        return "hidden"
    if fan_out:
        return "input"
    if fan_in:
        return "output"
    return "fixed"


def _infshape_scaling(p: torch.Tensor) -> tuple[bool, ...] | None:
    """Scaling dims from the ``mup`` package's ``p.infshape``, when ``set_base_shapes`` put one there."""
    infshape = getattr(p, "infshape", None)
    if infshape is None:
        return None
    try:
        return tuple(bool(dim.isinf()) for dim in infshape)
    except (TypeError, AttributeError):
        return None


def named_tensors(value: Any, name: str) -> list[tuple[str, torch.Tensor]]:
    """The floating-point tensors inside a module output: ``name`` itself, or ``name[i]`` / ``name[key]``
    for tuples, lists and dicts (nested as deep as they go)."""
    if isinstance(value, torch.Tensor):
        return [(name, value)] if value.is_floating_point() or value.is_complex() else []
    out: list[tuple[str, torch.Tensor]] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            out.extend(named_tensors(item, f"{name}[{key}]"))
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            out.extend(named_tensors(item, f"{name}[{i}]"))
    return out


def main_output(value: Any) -> torch.Tensor | None:
    """The tensor recorded as ``<output>``: the output itself, else its ``logits``, else the first
    non-scalar floating tensor inside it. A bare scalar is the loss, not an output."""
    if isinstance(value, torch.Tensor):
        return value if value.dim() > 0 and value.is_floating_point() else None
    logits = value.get("logits") if isinstance(value, Mapping) else getattr(value, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    for _, tensor in named_tensors(value, ""):
        if tensor.dim() > 0:
            return tensor
    return None


def activation_role(module: nn.Module | None, scaling: tuple[bool, ...], param_roles: Mapping[str, str],
                    module_name: str) -> str:
    """An activation's role: that of its module's ``weight`` if it has one, else by its own shape."""
    if module is not None:
        weight_name = f"{module_name}.weight" if module_name else "weight"
        role = param_roles.get(weight_name)
        if role in ("input", "hidden", "output"):
            return role
    return "hidden" if any(scaling) else "fixed"


def _compare(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[bool, ...]:
    if len(a) != len(b):
        return tuple(False for _ in a)
    return tuple(x != y for x, y in zip(a, b, strict=True))


def infer_layers(spec: Spec, widths: tuple[int, int]) -> dict[str, Layer]:
    """Roles of every parameter, module output, tap, ``<output>`` and ``<loss>`` of ``spec``'s model,
    found by building it at two widths and comparing shapes."""
    from coordscope.job import observe_shapes  # job imports this module

    shapes: list[dict[str, tuple[str, tuple[int, ...]]]] = []
    params: list[dict[str, tuple[int, ...]]] = []
    models: list[nn.Module] = []
    for width in widths:
        torch.manual_seed(0)
        model = build_model(spec, width)
        batch = first_batch(spec)
        shapes.append(observe_shapes(spec, model, batch, width))
        params.append({n: tuple(p.shape) for n, p in model.named_parameters(remove_duplicate=False)})
        models.append(model)

    owner = {f"{m}.{n}" if m else n: mod for m, mod in models[0].named_modules()
             for n, _ in mod.named_parameters(recurse=False)}
    layers: dict[str, Layer] = {}
    param_roles: dict[str, str] = {}
    recorded = {name for name, _ in models[0].named_parameters()}
    # Tied weights (an embedding reused as the readout) appear under every alias here, so that each module
    # using them gets the role its own layout gives (input for the embedding, output for the readout);
    # rows are recorded under the first name only.
    for name, p in models[0].named_parameters(remove_duplicate=False):
        scaling = _infshape_scaling(p) or _compare(params[0][name], params[1].get(name, params[0][name]))
        module = owner.get(name)
        role = weight_role(scaling, module)
        param_roles[name] = role
        if name in recorded:
            layers[name] = Layer(role, type(module).__name__ if module is not None else "Parameter",
                                 params[0][name], scaling)

    modules = dict(models[0].named_modules())
    for name, (module_type, shape) in shapes[0].items():
        other = shapes[1].get(name, (module_type, shape))[1]
        scaling = _compare(shape, other)
        if name == OUTPUT:
            role = "output"
        elif name == LOSS:
            role = "loss"
        elif module_type == "tap":
            role = "attn_logits" if name.endswith("attn_logits") else ("hidden" if any(scaling) else "fixed")
        else:
            module_name = name.split("[")[0].split("#")[0]
            role = activation_role(modules.get(module_name), scaling, param_roles, module_name)
        layers[name] = Layer(role, module_type, shape, scaling)
    return layers
