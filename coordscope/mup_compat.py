"""For users of the ``mup`` package: coordscope's records as the frame ``mup.coord_check.get_coord_data`` returns.

:func:`get_coord_data` takes the same arguments as mup's (a dict ``{width: lazy model}``, a data loader, an
optimizer name, ``lr``, ``mup=True`` for ``MuSGD``/``MuAdam``/``MuAdamW``, ``nsteps``, ``nseeds``, …) — or a
coordscope spec — records the run with :func:`coordscope.run`, and returns a pandas frame with mup's
columns ``width, module, t, <probe>, optimizer, lr``, so plotting code written for mup
(``mup.coord_check.plot_coord_data``, seaborn) keeps working. The run directory stays on disk (``out``) for
``coordscope check`` and the app.

How the frame lines up with mup's (``docs/migrating-from-mup.md`` has the details):

* **t** is mup's: its forward pass ``t`` (1 … nsteps) sees the model after ``t − 1`` updates, which is
  coordscope's step ``t − 1``. coordscope also measures the model after the last update; that pass has no
  mup counterpart and is left out.
* **module** names are mup's: the root model's output is ``''`` (coordscope's ``<output>``), a tuple or dict
  output of a module is ``name:out[i]``. coordscope records leaf modules (and taps, which mup cannot see,
  left out here); mup also records container modules, whose outputs are not in this frame.
* **seeds**: mup seeds once per seed and builds the widths one after another from that stream, coordscope
  seeds every (width, seed) job on its own, so initial weights agree only where the model function seeds
  itself or for the first width.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pandas as pd
import polars as pl
import torch
import torch.nn.functional as F
from torch import nn

from coordscope.coordcheck import run
from coordscope.errors import ConfigError
from coordscope.outputs import OUTPUT
from coordscope.runmeta import read_meta
from coordscope.spec import Spec, load_spec
from coordscope.store import load

LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "xent": F.cross_entropy,
    "mse": lambda output, target: F.mse_loss(output, F.one_hot(target, num_classes=output.size(-1)).float()),
    "nll": F.nll_loss,
}
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3, "adamw": 1e-3}


def _optimizer_class(name: str, use_mup: bool) -> Callable[..., torch.optim.Optimizer]:
    """mup's optimizer for ``name`` when ``use_mup``, else torch's: what mup's get_coord_data picks."""
    if name not in DEFAULT_LR:
        raise ConfigError(f"optimizer must be one of {', '.join(DEFAULT_LR)}, got {name!r}")
    if not use_mup:
        return {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    try:
        from mup.optim import MuAdam, MuAdamW, MuSGD
    except ImportError as exc:
        raise ConfigError("mup=True needs the mup package: pip install 'coordscope[mup]'") from exc
    return {"sgd": MuSGD, "adam": MuAdam, "adamw": MuAdamW}[name]


def _mup_loss(lossfn: str, dict_in_out: bool, output_name: str, flatten_input: bool,
              flatten_output: bool) -> Callable[[nn.Module, Any], torch.Tensor]:
    """The loss exactly as mup's ``_get_coord_data`` computes it from a batch."""
    if lossfn not in LOSSES:
        raise ConfigError(f"lossfn must be one of {', '.join(LOSSES)}, got {lossfn!r}")

    def loss(model: nn.Module, batch: Any) -> torch.Tensor:
        if dict_in_out:
            outputs = model(**batch)
            return outputs[output_name] if isinstance(outputs, dict) else outputs[0]
        data, target = batch
        if flatten_input:
            data = data.view(data.size(0), -1)
        output = model(data)
        if flatten_output:
            output = output.view(-1, output.shape[-1])
        return LOSSES[lossfn](output, target)

    return loss


def spec_from_models(models: Mapping[int, Callable[[], nn.Module]], dataloader: Iterable[Any], *,
                     optimizer: str = "sgd", lr: float | None = None, mup: bool = True,
                     dict_in_out: bool = False, flatten_input: bool = False, flatten_output: bool = False,
                     output_name: str = "loss", lossfn: str = "xent") -> Spec:
    """A coordscope :class:`Spec` equivalent to mup's ``get_coord_data`` arguments (its first batch is
    the fixed batch, as with mup's default ``fix_data=True``)."""
    if not models:
        raise ConfigError("models is empty: pass {width: function returning the model at that width}")
    optimizer_class = _optimizer_class(optimizer, mup)
    try:
        batch = next(iter(dataloader))
    except StopIteration:
        raise ConfigError("the dataloader yielded nothing") from None

    def model(width: int) -> nn.Module:
        if width not in models:
            raise ConfigError(f"no model for width {width} (widths: {sorted(models)})")
        return models[width]()

    def make_optimizer(net: nn.Module, rate: float) -> torch.optim.Optimizer:
        return optimizer_class(net.parameters(), lr=rate)

    return Spec(
        model=model,
        batches=lambda: iter([batch]),
        loss=_mup_loss(lossfn, dict_in_out, output_name, flatten_input, flatten_output),
        optimizer=make_optimizer,
        defaults={"widths": sorted(models), "lr": lr if lr is not None else DEFAULT_LR[optimizer]},
        ref="<mup get_coord_data>",
        description=f"mup-style models, {'Mu' if mup else ''}{optimizer}",
    )


def mup_module_name(name: str) -> str:
    """coordscope's record name → mup's module name: ``<output>`` → ``''``, ``m[0]`` → ``m:out[0]``, and
    the ``#k`` of a module's k-th call dropped (mup gives every call the module's own name)."""
    if name == OUTPUT:
        return ""
    name = re.sub(r"#\d+", "", name)
    return re.sub(r"^([^\[]*)\[", r"\1:out[", name, count=1)


def to_mup_frame(run_dir: str | os.PathLike[str], *, probe: str = "l1", optimizer: str = "",
                 lr: float | None = None) -> pd.DataFrame:
    """The module outputs of a recorded run as mup's coord-check frame: columns ``width, module, t,
    <probe>, optimizer, lr``, one row per (seed, width, t, module) in recording order, t = step + 1 for the
    steps mup measures (all but the last)."""
    rows = load(run_dir)
    last = rows.get_column("step").max()
    frame = (
        rows.filter((pl.col("site") == "act") & (pl.col("probe") == probe) & (pl.col("module") != "tap")
                    & (pl.col("step") < last))
        .with_row_index("_order")
        .sort(["seed", "width", "step", "_order"])
        .select(
            pl.col("width"),
            pl.col("name").map_elements(mup_module_name, return_dtype=pl.String).alias("module"),
            (pl.col("step") + 1).alias("t"),
            pl.col("value").alias(probe),
        )
    ).to_pandas()
    frame["optimizer"] = optimizer
    frame["lr"] = lr
    return frame


def get_coord_data(models: Mapping[int, Callable[[], nn.Module]] | Spec | str,
                   dataloader: Iterable[Any] | None = None, optimizer: str = "sgd", lr: float | None = None,
                   mup: bool = True, *, nsteps: int = 3, nseeds: int = 1, probe: str = "l1",
                   dict_in_out: bool = False, flatten_input: bool = False, flatten_output: bool = False,
                   output_name: str = "loss", lossfn: str = "xent",
                   out: str | os.PathLike[str] | None = None, show_progress: bool = True) -> pd.DataFrame:
    """Drop-in for ``mup.coord_check.get_coord_data``, recorded by coordscope (module docstring).

    ``models``: mup's ``{width: lazy model}`` (then ``dataloader``, ``optimizer``, ``lr``, ``mup`` and the
    loss options mean what they mean in mup), or a coordscope spec (then the spec's data, loss and
    optimizer are used; ``lr`` overrides its default). ``out``: where the run is kept (default: a new
    temporary directory; an existing run there is not overwritten). The frame's ``attrs["run_dir"]``
    says where it went.
    """
    if isinstance(models, (Spec, str)):
        spec, widths, name = load_spec(models), None, ""
    else:
        if dataloader is None:
            raise ConfigError("a dict of models needs a dataloader (as in mup's get_coord_data)")
        spec = spec_from_models(models, dataloader, optimizer=optimizer, lr=lr, mup=mup,
                                dict_in_out=dict_in_out, flatten_input=flatten_input,
                                flatten_output=flatten_output, output_name=output_name, lossfn=lossfn)
        widths, name = sorted(models), optimizer
    if nsteps < 1:
        raise ConfigError(f"nsteps must be at least 1, got {nsteps}")
    run_dir = run(spec, widths=widths, steps=nsteps, seeds=nseeds, lr=lr, probes=[probe],
                  out=out if out is not None else tempfile.mkdtemp(prefix="coordscope-mup-"),
                  progress=show_progress)
    meta = read_meta(run_dir)
    frame = to_mup_frame(run_dir, probe=probe, optimizer=name or meta.optimizer, lr=float(meta.lr or 0.0))
    frame.attrs["run_dir"] = str(run_dir)
    return frame
