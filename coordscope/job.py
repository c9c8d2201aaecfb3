"""One job of a coordinate check: one model at one width and seed, trained on the fixed batch.

Step semantics (DESIGN.md): step t is the model after t optimizer updates. At every t = 0..T the forward
pass on the fixed batch gives ``act`` and ``act_delta`` (x_t − x_0); its backward gives ``act_grad`` and
``param_grad``; ``param`` is W_t; then the optimizer steps and ``param_update`` is W_{t+1} − W_t.

Every statistic is a probe's 0-d tensor, computed in float32 on the model's device (:mod:`coordscope.stats`);
a step's statistics are moved to the host in **one** transfer, then streamed to the job's Parquet shard as
one row group. Nothing accumulates across steps, so memory does not grow with the number of steps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from coordscope.device import TORCH_DTYPES, seed_everything, to_device
from coordscope.outputs import LOSS
from coordscope.probe_select import resolve_probes
from coordscope.record import Recorder, on_grad_ready
from coordscope.roles import Layer
from coordscope.spec import Spec, build_model, checked_loss, first_batch, load_spec, make_optimizer, optimizer_step
from coordscope.stats import StepStats, UpdateTracker
from coordscope.store import ShardWriter
from coordscope.taps import sdpa_callers, sdpa_scope


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


def record_job(job: Job, on_step: Callable[[], None] | None = None) -> str:
    """Train one model for ``job.steps`` steps on the fixed batch, streaming statistics to its shard; returns
    the shard's path.
    ``on_step`` runs after each step (benchmarks interleave plain training there). On any exception the
    half-written shard is deleted."""
    spec = load_spec(job.spec)
    probes = resolve_probes(list(job.probes))
    dtype = TORCH_DTYPES[job.dtype]
    seed_everything(job.seed, job.device)
    model = build_model(spec, job.width).to(job.device, dtype)
    batch = to_device(first_batch(spec), job.device, dtype)
    optimizer = make_optimizer(spec, model, job.lr, job.width)
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
                optimizer_step(spec, optimizer, job.width, step)
                for name, update in updates.after_step(last=step == job.steps):
                    stats.add(name, "param_update", update)
            writer.write(step, **stats.end())
            if on_step is not None:
                on_step()
        return str(writer.commit())
