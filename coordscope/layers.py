"""Layer inference: every name a run records, with its μP role, found by running the model at two widths.

Nobody has to declare which dimensions grow with width: coordscope builds the model at the two smallest
widths of the run, runs one forward pass on the first batch under the recorder, and compares the shapes
of every parameter, module output and tap (:mod:`coordscope.roles` turns that into roles). A broken spec
fails here, before anything is written to disk.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import torch
from torch import nn

from coordscope.blocks import repeated_blocks
from coordscope.device import seed_everything
from coordscope.outputs import LOSS, OUTPUT
from coordscope.record import Recorder
from coordscope.roles import Layer, infshape_scaling, module_owner, recorded_role, scaling_dims, weight_role
from coordscope.spec import Spec, build_model, checked_loss, first_batch
from coordscope.taps import SdpaTap

Fingerprint = tuple[int, float, float]
Shapes = dict[str, tuple[str, tuple[int, ...], Fingerprint]]


def fingerprint(tensor: torch.Tensor) -> Fingerprint:
    """Entry count, sum and sum of squares (in float64): equal for two tensors that hold the same values,
    however they are shaped. Cheap, and no copy of an activation is kept."""
    x = tensor.detach().to(torch.float64)
    return x.numel(), float(x.sum()), float(x.square().sum())


def same_values(a: Fingerprint, b: Fingerprint) -> bool:
    """Whether two fingerprints are those of the same values (up to rounding)."""
    return a[0] == b[0] and all(abs(x - y) <= 1e-6 * max(abs(x), abs(y), 1e-30) for x, y in zip(a[1:], b[1:],
                                                                                              strict=True))


def observe_shapes(spec: Spec, model: nn.Module, batch: Any, width: int, extra: Collection[str] = ()) -> Shapes:
    """Run one forward pass (no grad) and note the module type, shape and :func:`fingerprint` of every
    recorded name (``extra``: modules with children recorded too)."""
    seen: Shapes = {}

    def sink(name: str, site: str, tensor: torch.Tensor, module_type: str) -> None:
        if name not in seen:
            seen[name] = (module_type, tuple(tensor.shape), fingerprint(tensor))

    with Recorder(model, sink, grads=False, extra=extra), SdpaTap(), torch.no_grad():
        loss = checked_loss(spec, model, batch, width, 0)
    seen[LOSS] = ("<loss>", tuple(loss.shape), fingerprint(loss))
    return seen


def infer_layers(spec: Spec, widths: tuple[int, int], depth: int | None = None,
                 dims: tuple[Mapping[str, int], Mapping[str, int]] | None = None) -> dict[str, Layer]:
    """Roles of every parameter, module output, tap, ``<output>`` and ``<loss>`` of ``spec``'s model,
    found by building it at two widths and comparing shapes (at ``depth``, when depth is swept: the
    deepest, whose names include those of every shallower model). In a dimension sweep the two models
    differ in that dimension instead (``dims``, at one width): the roles are those it implies — with only
    ``d_ff`` growing, the FFN's first matrix is input-like and its second output-like."""
    shapes: list[Shapes] = []
    params: list[dict[str, tuple[int, ...]]] = []
    models: list[nn.Module] = []
    for width, sizes in zip(widths, dims or (None, None), strict=True):
        seed_everything(0)
        model = build_model(spec, width, depth, sizes)
        # In a depth sweep the residual blocks' outputs (the residual stream) are recorded too.
        blocks = repeated_blocks(model) if depth is not None else ()
        shapes.append(observe_shapes(spec, model, first_batch(spec), width, blocks))
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
    # The mup package's infshape says which dimensions the user declared as scaling. Where it declares none
    # at all (mup.set_base_shapes(model, None): standard parametrization through mup) it says nothing about
    # the model's widths, and the shapes measured at the two widths decide. Its infshape speaks of width, so
    # a dimension sweep goes by the shapes alone.
    declared = {name: infshape_scaling(p) for name, p in models[0].named_parameters(remove_duplicate=False)}
    if dims is not None or not any(any(grows) for grows in declared.values() if grows):
        declared = {}
    for name in params[0]:
        scaling = declared.get(name) or scaling_dims(params[0][name], params[1].get(name, params[0][name]))
        module = owner.get(name)
        role = weight_role(scaling, module)
        param_roles[name] = role
        if name in recorded:
            layers[name] = Layer(role, type(module).__name__ if module is not None else "Parameter",
                                 params[0][name], scaling)

    modules = dict(models[0].named_modules())
    for name, (module_type, shape, _) in shapes[0].items():
        scaling = scaling_dims(shape, shapes[1].get(name, (module_type, shape, None))[1])
        module = modules.get(module_owner(name))
        role = recorded_role(name, module_type, scaling, module, param_roles)
        layers[name] = Layer(role, module_type, shape, scaling, role == "output" and _rescaled(name, shapes))
    return layers


def _rescaled(name: str, shapes: list[Shapes]) -> bool:
    """Whether an output-role module's values differ from the model's output at either width while having
    as many entries: the model rescaled them on the way (at the base width a 1/m multiplier is 1, so one width
    cannot tell; entries, not shapes, so that a readout whose logits are also reshaped still counts). An
    output-like module with another number of entries is not the readout but a layer inside (an FFN's second
    matrix when only d_ff grows): judged as what it is."""
    return name != OUTPUT and any(OUTPUT in seen and name in seen and seen[name][2][0] == seen[OUTPUT][2][0]
                                  and not same_values(seen[name][2], seen[OUTPUT][2]) for seen in shapes)
