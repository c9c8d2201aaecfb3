"""``coordscope.run``: record a coordinate check — resolve the settings, find every layer's role, plan one
job per (width, seed), and hand them to the shared orchestration (:mod:`coordscope.orchestrate`)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from coordscope.config import ConfigSource
from coordscope.device import seed_everything
from coordscope.groups import Hyperparameters, collect, widths_table
from coordscope.job import Job, record_job
from coordscope.layers import infer_layers
from coordscope.orchestrate import execute_run, new_meta
from coordscope.roles import Layer
from coordscope.runmeta import JobRecord
from coordscope.settings import RunSettings, resolve_run
from coordscope.spec import Spec, build_model, first_batch, make_optimizer, rehearse
from coordscope.store import shard_name


def effective_hyperparameters(spec: Spec, widths: tuple[int, ...], lr: float, depth: int | None = None,
                              dim: tuple[str, tuple[int, ...]] | None = None) -> dict[str, Hyperparameters]:
    """The optimizer's lr, weight decay and ε for every parameter at every width, read from the optimizer
    the spec builds there (nothing is trained; each model is freed before the next is built). In a
    dimension sweep (``dim``), at every value of that dimension at the one width, keyed by the value.

    Models are built on the ``meta`` device, where initialising the widest one costs nothing (on the CPU
    it was a tenth of a second of the MLP sweep); a spec whose model or optimizer cannot be built there
    is built on the CPU."""
    per_width = []
    points = [(v, widths[0], {dim[0]: v}) for v in dim[1]] if dim else [(w, w, None) for w in widths]
    for key, width, sizes in points:
        seed_everything(0)
        try:
            with torch.device("meta"):
                model = build_model(spec, width, depth, sizes)
                values = collect(model, make_optimizer(spec, model, lr, width))
        except Exception:
            model = build_model(spec, width, depth, sizes)
            values = collect(model, make_optimizer(spec, model, lr, width))
        per_width.append((key, values))
        del model
    return widths_table(per_width)


def run(
    spec: Spec | str,
    *,
    widths: Any = None,
    depths: Any = None,
    dim: Any = None,
    steps: Any = None,
    seeds: Any = None,
    lr: Any = None,
    probes: Any = None,
    out: str | os.PathLike[str] | None = None,
    executor: str | None = None,
    workers: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    exact: bool | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    config: ConfigSource = None,
) -> Path:
    """Record a coordinate check of ``spec`` and return its run directory.

    ``spec``: a :class:`Spec`, a sample name, a ``.py`` file, ``module`` or ``module:attr``.
    ``seeds``: a count N (seeds 0..N−1) or a list. Unset settings come from ``[tool.coordscope]`` of
    ``config`` (a :class:`coordscope.config.Config`, a pyproject.toml path, or None for the nearest one),
    then from the spec's ``DEFAULTS``, then from coordscope's (widths 64..512, 5 steps, 3 seeds, lr 0.01,
    probe ``rms``, cpu, float32, inline). ``depths``: sweep depth too — the spec's ``model(width, depth)`` is
    called for every (width, depth, seed), and one width is enough (:mod:`coordscope.depth`). ``exact``:
    measure ``param_update`` and ``act_delta`` on every entry (whole copies kept) instead of a fixed subset
    of big tensors' entries (:mod:`coordscope.sampling`).
    """
    settings = resolve_run(spec, config=config, widths=widths, depths=depths, dim=dim, steps=steps, seeds=seeds, lr=lr,
                           probes=probes,
                           executor=executor, workers=workers, device=device, dtype=dtype, exact=exact, out=out,
                           overwrite=overwrite, resume=resume, progress=progress)
    assert settings.lr is not None  # resolve_run always sets a coordinate check's lr
    # The user's model, loss and optimizer fail here, in one line, before anything is written.
    if settings.depths is not None:
        return _run_depths(settings)
    if settings.dim is not None:
        return _run_dimension(settings)
    layers = infer_layers(settings.spec, (settings.widths[0], settings.widths[1]))
    optimizer = rehearse(settings.spec, settings.widths[0], settings.lr, first_batch(settings.spec))
    hyperparameters = effective_hyperparameters(settings.spec, settings.widths, settings.lr)
    pairs = [(w, s) for w in settings.widths for s in settings.seeds]
    records = [JobRecord(w, s, shard_name(w, s)) for w, s in pairs]
    template = _template(settings, layers)
    jobs = [replace(template, width=w, seed=s) for w, s in pairs]
    return execute_run(settings, jobs, records, record_job,
                       lambda run_dir: new_meta(settings, run_dir, records, layers=layers, optimizer=optimizer,
                                                hyperparameters=hyperparameters))


def _template(settings: RunSettings, layers: dict[str, Layer]) -> Job:
    """The job every job of a run is a copy of, with its own width, seed (and depth, or dimension)."""
    assert settings.lr is not None
    return Job(spec=settings.spec if settings.executor == "inline" else settings.spec.ref, width=0, seed=0,
               steps=settings.steps, lr=settings.lr, probes=settings.probes, run_dir=str(settings.out),
               run=settings.out.resolve().name, layers=layers, device=settings.device, dtype=settings.dtype,
               exact=settings.exact)


def _run_depths(settings: RunSettings) -> Path:
    """A depth sweep: one job per (width, depth, seed), ``model(width, depth)``; roles are inferred at the
    deepest depth (its names include every shallower model's), at the two smallest widths (the smallest
    and twice it when only one width is swept)."""
    assert settings.lr is not None and settings.depths is not None
    widths, depths = settings.widths, settings.depths
    pair = (widths[0], widths[1]) if len(widths) > 1 else (widths[0], 2 * widths[0])
    layers = infer_layers(settings.spec, pair, depths[-1])
    optimizer = rehearse(settings.spec, widths[0], settings.lr, first_batch(settings.spec), depths[0])
    hyperparameters = effective_hyperparameters(settings.spec, widths, settings.lr, depths[-1])
    per_depth = {str(d): effective_hyperparameters(settings.spec, widths[:1], settings.lr, d)[str(widths[0])]
                 for d in depths}
    triples = [(w, d, s) for w in widths for d in depths for s in settings.seeds]
    records = [JobRecord(w, s, shard_name(w, s, d), depth=d) for w, d, s in triples]
    template = _template(settings, layers)
    jobs = [replace(template, width=w, depth=d, seed=s) for w, d, s in triples]
    return execute_run(settings, jobs, records, record_job,
                       lambda run_dir: new_meta(settings, run_dir, records, layers=layers, optimizer=optimizer,
                                                hyperparameters=hyperparameters, depth_hyperparameters=per_depth))


def _run_dimension(settings: RunSettings) -> Path:
    """A dimension sweep: one job per (value, seed) at the one width, ``model(width, name=value)``; roles
    are inferred from the shapes at the two smallest values, hyperparameters read at every value."""
    assert settings.lr is not None and settings.dim is not None
    (width,), (name, values) = settings.widths, settings.dim
    layers = infer_layers(settings.spec, (width, width), dims=({name: values[0]}, {name: values[1]}))
    optimizer = rehearse(settings.spec, width, settings.lr, first_batch(settings.spec), dims={name: values[0]})
    hyperparameters = effective_hyperparameters(settings.spec, settings.widths, settings.lr, dim=settings.dim)
    pairs = [(v, s) for v in values for s in settings.seeds]
    records = [JobRecord(width, s, shard_name(width, s, dims={name: v}), dims=((name, v),)) for v, s in pairs]
    jobs = [replace(_template(settings, layers), width=width, dims={name: v}, seed=s) for v, s in pairs]
    return execute_run(settings, jobs, records, record_job,
                       lambda run_dir: new_meta(settings, run_dir, records, layers=layers, optimizer=optimizer,
                                                hyperparameters=hyperparameters))
