"""``coordscope.recording``: a coordinate check of the model you actually train, in the loop that trains it.

::

    with coordscope.recording(model, optimizer, out="runs/mine", width=256, seed=0) as rec:
        for batch in loader:
            loss = compute_loss(model, batch); loss.backward(); optimizer.step(); optimizer.zero_grad()
            rec.step()

Run it once per width (and seed) — one process each, started however you like, on one machine or several
writing to a shared directory — and ``coordscope check runs/mine`` judges the run like one made by
``coordscope run``: the store is the same (``meta.json`` and one shard per width × seed). What is measured
when (the fixed batch, extra passes, the optimizer's hooks) is :mod:`coordscope.loop`'s; how separate
processes share one run, its plan and its roles, :mod:`coordscope.sharedrun`'s. Under torchrun (DDP,
FSDP2) every rank calls ``recording`` with the same arguments; the statistics are those of the whole model
and the whole batch, and rank 0 writes (:mod:`coordscope.distributed`). The user guide is docs/own-loop.md.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from coordscope.distributed import World, current_world
from coordscope.errors import ConfigError, CoordscopeError
from coordscope.groups import collect
from coordscope.loop import LoopRecorder, LossFn
from coordscope.probe_select import resolve_probes
from coordscope.record import module_type_name
from coordscope.roles import Layer, infshape_scaling
from coordscope.sampling import SAMPLE
from coordscope.sharedrun import (
    JobInfo,
    NameInfo,
    ParamInfo,
    commit_job,
    describe,
    job_name,
    mark_failed,
    open_run,
    pending,
)
from coordscope.store import ShardWriter, local_dir, shard_name


class Recording:
    """What ``with coordscope.recording(...) as rec`` gives: call :meth:`step` after every optimizer step."""

    def __init__(self, recorder: LoopRecorder, run_dir: Path, width: int, seed: int, world: World | None,
                 writer: ShardWriter | None, progress: bool) -> None:
        self.run_dir = run_dir
        self.width = width
        self.seed = seed
        self._recorder = recorder
        self._world = world
        self._writer = writer
        self._progress = progress
        self._committed = False
        self._roles: dict[str, str] = {}
        self.steps_recorded = 0

    @property
    def done(self) -> bool:
        """Whether recording has stopped (``steps`` reached); the loop may go on, unrecorded."""
        return self._recorder.done

    def step(self, loss: torch.Tensor | None = None) -> None:
        """End step t (call after every ``optimizer.step()``). ``loss``: the loop's loss this step — recorded
        as ``<loss>`` when the step was measured on the loop's own forward pass of the fixed batch and the
        model's output holds no loss of its own."""
        if self._committed:
            return
        rows = self._recorder.step(loss)
        if rows is None:
            return
        if self._writer is not None:
            self._writer.write(self.steps_recorded, **rows)
            self._roles.update(zip(rows["names"], rows["roles"], strict=True))
        self.steps_recorded += 1
        if self._recorder.done:
            self._commit()

    def missing(self) -> list[tuple[int, int]]:
        """(width, seed) of the planned jobs of the run whose shard is not there yet."""
        return pending(self.run_dir)

    def _commit(self) -> None:
        """Give the shard its final name and rebuild the run's record (rank 0); nothing on other ranks."""
        self._recorder.detach()
        self._committed = True
        if self._writer is None:
            return
        if self.steps_recorded == 0:
            self._writer.abort()
            raise ConfigError("coordscope.recording: no step was recorded; call rec.step() after every "
                              "optimizer step")
        self._writer.commit()
        _, missing = commit_job(self.run_dir, self._job_info())
        if missing and self._progress:
            print(f"coordscope: {job_name(self.width, self.seed)} recorded in {self.run_dir}; "
                  f"{len(missing)} planned job(s) missing: {describe(missing)}", file=sys.stderr)

    def _abort(self, exc: BaseException) -> None:
        self._recorder.detach()
        self._committed = True
        if self._writer is not None:
            self._writer.abort()
            try:
                mark_failed(self.run_dir, self.width, self.seed, f"{type(exc).__name__}: {exc}")
            except CoordscopeError:
                pass

    def _job_info(self) -> JobInfo:
        recorder = self._recorder
        model, optimizer = recorder.model, recorder.optimizer
        owners = {f"{m}.{n}" if m else n: mod for m, mod in model.named_modules(remove_duplicate=False)
                  for n, _ in mod.named_parameters(recurse=False, remove_duplicate=False)}
        recorded = {name for name, _ in model.named_parameters()}
        params = {}
        for name, p in model.named_parameters(remove_duplicate=False):
            owner = owners.get(name)
            params[name] = ParamInfo(tuple(p.shape), module_type_name(owner) if owner is not None else "Parameter",
                                     isinstance(owner, nn.Embedding), infshape_scaling(p), name in recorded)
        names = {name: NameInfo(module, shape, owned, same) for name, (module, shape, owned, same)
                 in recorder.noted.items()}
        first = next(iter(model.parameters()), None)
        group = optimizer.param_groups[0] if optimizer.param_groups else {}
        lr = group.get("lr")
        return JobInfo(
            width=self.width, seed=self.seed, shard=shard_name(self.width, self.seed),
            steps=self.steps_recorded - 1, optimizer=type(optimizer).__name__,
            lr=float(lr) if isinstance(lr, (int, float)) else None, hyperparameters=collect(model, optimizer),
            params=params, names=names, device=first.device.type if first is not None else "cpu",
            dtype=str(first.dtype).removeprefix("torch.") if first is not None else "float32",
            ranks=self._world.size if self._world is not None else 1, roles=self._roles,
        )


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    return value


def _int_list(value: Any, what: str) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise ConfigError(f"{what} must be a non-empty list of integers, got {value!r}")
    out = tuple(value)
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in out) or len(set(out)) != len(out):
        raise ConfigError(f"{what} must be distinct non-negative integers, got {list(value)!r}")
    return out


@contextmanager
def recording(
    model: nn.Module,
    optimizer: Any,
    *,
    out: str | Path,
    width: int,
    seed: int = 0,
    widths: Sequence[int] | None = None,
    seeds: int | Sequence[int] | None = None,
    steps: int | None = None,
    batch: Any = None,
    loss: LossFn | None = None,
    probes: str | Sequence[str] | None = None,
    exact: bool = False,
    sample: int = SAMPLE,
    overwrite: bool = False,
    description: str | None = None,
    progress: bool = True,
) -> Iterator[Recording]:
    """Record a coordinate-check job of ``model`` at ``width`` (the number your μP scaling is about) and
    ``seed`` while your own loop trains it with ``optimizer``; call ``rec.step()`` after every optimizer step.

    ``out``: the run directory, shared by the jobs of every width and seed (created by the first).
    ``widths``, ``seeds`` (a count N for 0..N−1, or a list): the run's plan — it becomes checkable once every
    planned job has finished; without a plan it is judged on the jobs it has. ``steps``: record steps 0..steps
    and then stop recording (the loop goes on untouched); default: every step until the block ends.
    ``batch``: the fixed batch forward sites are measured on (default: the inputs of the model's first
    forward call); ``loss(model, batch)``: its loss, for ``act_grad`` when the loop's batches change (default:
    the model's own loss, if its output carries one). ``probes``: as ``--probes`` (default ``rms``).
    ``exact``: measure updates and activation changes on every entry, keeping whole copies (default: a fixed
    subset of ``sample`` entries of bigger tensors, see :mod:`coordscope.sampling`). ``overwrite``: record a
    job that the run already has again. Leaving the block on an exception deletes this job's shard.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    width = _positive_int(width, "width")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 0):
        raise ConfigError(f"steps must be a non-negative integer, got {steps!r}")
    sample = _positive_int(sample, "sample")
    if loss is not None and batch is None:
        raise ConfigError("loss= needs batch=: the loss of the fixed batch is loss(model, batch)")
    plan_widths = None if widths is None else _int_list(widths, "widths")
    plan_seeds = (tuple(range(_positive_int(seeds, "seeds"))) if isinstance(seeds, int) and not isinstance(seeds, bool)
                  else None if seeds is None else _int_list(seeds, "seeds"))
    if plan_seeds is not None and plan_widths is None:
        raise ConfigError("seeds= declares a plan together with widths=; give both, or neither")
    if plan_widths is not None:
        if len(plan_widths) < 2:
            raise ConfigError(f"widths must list at least two widths (a slope needs two), got {list(plan_widths)}")
        if width not in plan_widths:
            raise ConfigError(f"width {width} is not one of the planned widths {list(plan_widths)}")
        if seed not in (plan_seeds or (0,)):
            raise ConfigError(f"seed {seed} is not one of the planned seeds {list(plan_seeds or (0,))}")
    selected = resolve_probes(probes)
    world = current_world()
    run_dir = local_dir(out)
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    error: str | None = None
    layers: Mapping[str, Layer] = {}
    if world is None or world.rank == 0:
        try:
            layers = open_run(run_dir, width=width, seed=seed, widths=plan_widths, seeds=plan_seeds, steps=steps,
                     probes=tuple(selected), overwrite=overwrite, spec=f"own loop ({script})", exact=exact,
                     description=description if description is not None else f"recorded in {script}").layers
        except CoordscopeError as exc:
            if world is None:
                raise
            error = str(exc)
    if world is not None:  # every rank fails alike, or none does; all know the run's roles
        error, layers = world.broadcast_object((error, layers))
        if error is not None:
            raise ConfigError(error)
    # The roles the run has inferred so far: rows carry them from the start (no rewrite later).
    recorder = LoopRecorder(model, optimizer, probes=selected, width=width, layers=layers, batch=batch, loss=loss,
                            steps=steps, sample=sample, exact=exact, world=world, note_shapes=True)
    writer = (ShardWriter(run_dir, run_dir.resolve().name, width, seed)
              if world is None or world.rank == 0 else None)
    rec = Recording(recorder, run_dir, width, seed, world, writer, progress)
    try:
        recorder.__enter__()
    except BaseException as exc:
        rec._abort(exc)
        raise
    try:
        yield rec
    except BaseException as exc:
        rec._abort(exc)
        raise
    if not rec._committed:
        rec._commit()

