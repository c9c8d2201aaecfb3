"""One job of a coordinate check: one model at one width and seed, trained on the fixed batch.

Step semantics (DESIGN.md): step t is the model after t optimizer updates. At every t = 0..T the forward
pass on the fixed batch gives ``act`` and ``act_delta`` (x_t − x_0); its backward gives ``act_grad`` and
``param_grad``; ``param`` is W_t; then the optimizer steps and ``param_update`` is W_{t+1} − W_t.

The loop is the one a user would write; what it records is :class:`coordscope.loop.LoopRecorder`'s business,
the same recorder :func:`coordscope.recording` attaches to a user's own loop, so both stores hold the same
statistics. Every statistic is a probe's 0-d tensor, computed in float32 on the model's device
(:mod:`coordscope.stats`); a step's statistics are moved to the host in **one** transfer, then streamed to
the job's Parquet shard as one row group. Nothing accumulates across steps, so memory does not grow with
the number of steps, and updates are measured without a copy of the model (:mod:`coordscope.sampling`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from coordscope.device import TORCH_DTYPES, seed_everything, to_device
from coordscope.loop import LoopRecorder
from coordscope.probe_select import resolve_probes
from coordscope.roles import Layer
from coordscope.spec import Spec, build_model, checked_loss, first_batch, load_spec, make_optimizer, optimizer_step
from coordscope.store import ShardWriter


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to record one (width, seed) job; picklable when ``spec`` is a ref.

    ``exact``: keep whole copies for differences instead of a fixed subset of big tensors' entries
    (:mod:`coordscope.sampling`)."""

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
    exact: bool = False
    depth: int | None = None  # in a depth sweep: the model is ``model(width, depth)``
    dims: Mapping[str, int] | None = None  # in a dimension sweep: ``model(width, d_ff=256)``


def record_job(job: Job, on_step: Callable[[], None] | None = None) -> str:
    """Train one model for ``job.steps`` steps on the fixed batch, streaming statistics to its shard; returns
    the shard's path.
    ``on_step`` runs after each step (benchmarks interleave plain training there). On any exception the
    half-written shard is deleted."""
    spec = load_spec(job.spec)
    probes = resolve_probes(list(job.probes))
    dtype = TORCH_DTYPES[job.dtype]
    seed_everything(job.seed, job.device)
    model = build_model(spec, job.width, job.depth, job.dims).to(job.device, dtype)
    batch = to_device(first_batch(spec), job.device, dtype)
    optimizer = make_optimizer(spec, model, job.lr, job.width)  # in train mode (ScheduleFree)

    with ShardWriter(Path(job.run_dir), job.run, job.width, job.seed, depth=job.depth, dims=job.dims) as writer, \
            LoopRecorder(model, optimizer, probes=probes, width=job.width, layers=job.layers,
                         exact=job.exact) as recorder:
        for step in range(job.steps + 1):
            model.train()
            loss = checked_loss(spec, model, batch, job.width, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer_step(spec, optimizer, job.width, step)
            rows = recorder.step(loss)
            assert rows is not None
            writer.write(step, **rows)
            if on_step is not None:
                on_step()
        return str(writer.commit())
