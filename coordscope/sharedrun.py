"""A run that separate processes record into: one process per (width, seed) job, started on its own, on one
machine or several sharing a directory — the store :func:`coordscope.recording` writes.

Nothing coordinates the processes but the directory. Each process, under a lock (:func:`run_lock`, a
directory made with ``mkdir``, atomic on local and network filesystems alike):

- on start (:func:`open_run`), creates ``meta.json`` if it is the first, or checks that it joins a run of
  the same kind, probes and plan, and that its job is not recorded yet;
- on finishing (:func:`commit_job`), after its shard got its final name, writes ``jobs/w<W>-s<S>.json`` —
  what it saw of the model: the shape of every parameter and recorded name, which module owns it — and
  rebuilds ``meta.json`` from every finished job.

**The plan.** With a declared plan (``widths=`` and ``seeds=``) ``meta.json`` lists every planned job from
the start and its status stays ``running`` until every planned shard is there, so ``coordscope check``
refuses the run until then (:func:`pending` and the message each finishing job prints name the missing
jobs). Without a plan, the run is the jobs it has: ``jobs`` lists the finished ones and the status is
``complete`` after every commit.

**Roles.** A process sees its model at one width, and μP roles come from comparing widths. So roles are
inferred, at every commit, from the jobs of the run (:func:`infer_roles`): the shapes at the two smallest
widths are compared with the same rules a spec's run uses (:mod:`coordscope.roles`), and where the ``mup``
package's ``infshape`` declares which dimensions scale, that wins. Until a second width has finished, only
what a name says is known (``<output>``, ``<loss>``, attention logits, and what ``infshape`` declares);
the rest is ``unknown``. Since the checker reads each row's ``role``, every shard whose roles changed is
rewritten (atomically) with the run's roles, so all shards agree and ``check``, ``report``, the dashboard
and the Python API read the run unchanged; a job that starts once the run has its roles writes them
from its first row on (:func:`open_run` returns them), so in practice only the shards recorded before the
second width finished are ever rewritten, once.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from torch import nn

from coordscope.errors import ConfigError, StoreError
from coordscope.outputs import LOSS, OUTPUT
from coordscope.roles import Layer, module_owner, recorded_role, scaling_dims, weight_role
from coordscope.runmeta import META, RECORDING, SCHEMA_VERSION, JobRecord, RunMeta, read_meta, write_meta
from coordscope.store import SCHEMA, missing_jobs, shard_name, string_array

JOBS = "jobs"
LOCK = ".lock"
STALE_LOCK_S = 120.0
"""A lock older than this was left by a killed process (the work under it takes well under a second)."""


@dataclass(frozen=True)
class ParamInfo:
    """A parameter as one job saw it: global shape, owning module's class, whether that is an ``nn.Embedding``
    (whose weight is [fan_in, fan_out]), the scaling ``mup``'s infshape declares, whether rows carry its name
    (a tied weight's second name does not)."""

    shape: tuple[int, ...]
    module: str
    embedding: bool = False
    declared: tuple[bool, ...] | None = None
    recorded: bool = True


@dataclass(frozen=True)
class NameInfo:
    """A recorded activation, tap or ``<output>`` as one job saw it at step 0: its module's class, its shape
    (the whole batch's), whether a module of that name exists, and whether its values were ``<output>``'s."""

    module: str
    shape: tuple[int, ...]
    owned: bool
    same_as_output: bool


@dataclass(frozen=True)
class JobInfo:
    """What one finished job tells the run (``jobs/w<W>-s<S>.json``)."""

    width: int
    seed: int
    shard: str
    steps: int
    optimizer: str = ""
    lr: float | None = None
    hyperparameters: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    params: Mapping[str, ParamInfo] = field(default_factory=dict)
    names: Mapping[str, NameInfo] = field(default_factory=dict)
    device: str = "cpu"
    dtype: str = "float32"
    ranks: int = 1
    roles: Mapping[str, str] = field(default_factory=dict)
    """The role its shard's rows carry, by name (rewritten when the run's roles change)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> JobInfo:
        return JobInfo(
            width=int(data["width"]), seed=int(data["seed"]), shard=str(data["shard"]), steps=int(data["steps"]),
            optimizer=str(data.get("optimizer", "")), lr=None if data.get("lr") is None else float(data["lr"]),
            hyperparameters={str(n): {str(k): float(v) for k, v in values.items()}
                             for n, values in (data.get("hyperparameters") or {}).items()},
            params={str(n): ParamInfo(tuple(p["shape"]), str(p["module"]), bool(p.get("embedding")),
                                      None if p.get("declared") is None else tuple(bool(d) for d in p["declared"]),
                                      bool(p.get("recorded", True)))
                    for n, p in (data.get("params") or {}).items()},
            names={str(n): NameInfo(str(v["module"]), tuple(v["shape"]), bool(v["owned"]), bool(v["same_as_output"]))
                   for n, v in (data.get("names") or {}).items()},
            device=str(data.get("device", "cpu")), dtype=str(data.get("dtype", "float32")),
            ranks=int(data.get("ranks", 1)), roles={str(k): str(v) for k, v in (data.get("roles") or {}).items()},
        )


def job_file(width: int, seed: int) -> str:
    """The path, inside a run, of job (width, seed)'s record."""
    return f"{JOBS}/w{width}-s{seed}.json"


def job_name(width: int, seed: int) -> str:
    return f"width {width} seed {seed}"


@contextmanager
def run_lock(run_dir: Path, timeout: float = 600.0) -> Iterator[None]:
    """Hold the run's lock: ``mkdir`` of ``.lock`` succeeds for one process at a time, here or on another
    machine sharing the directory. A lock older than :data:`STALE_LOCK_S` is taken over."""
    lock = run_dir / LOCK
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.mkdir(lock)
            break
        except FileExistsError:
            try:
                stale = time.time() - lock.stat().st_mtime > STALE_LOCK_S
            except FileNotFoundError:
                continue
            if stale:
                shutil.rmtree(lock, ignore_errors=True)
                continue
            if time.monotonic() > deadline:
                raise StoreError(f"{lock} is held by another process (if none is recording, delete it)") from None
            time.sleep(0.02)
    try:
        (lock / "owner").write_text(f"{socket.gethostname()} {os.getpid()}\n")
        yield
    finally:
        shutil.rmtree(lock, ignore_errors=True)


def _plan(widths: Sequence[int] | None, seeds: Sequence[int] | None) -> tuple[JobRecord, ...] | None:
    if widths is None:
        return None
    return tuple(JobRecord(w, s, shard_name(w, s)) for w in widths for s in (seeds or (0,)))


def open_run(out: Path, *, width: int, seed: int, widths: Sequence[int] | None, seeds: Sequence[int] | None,
             steps: int | None, probes: Sequence[str], overwrite: bool, spec: str, description: str,
             exact: bool = False) -> RunMeta:
    """Create the run in ``out``, or join the one there, for job (width, seed); refuse in one line what does
    not fit (see the module docstring). Returns the run's record."""
    from coordscope.orchestrate import versions

    if out.exists() and not out.is_dir():
        raise ConfigError(f"output path {str(out)!r} is a file, not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output directory {str(out)!r}: {exc.strerror}") from exc
    plan = _plan(widths, seeds)
    with run_lock(out):
        if not (out / META).is_file():
            if any(p.name != LOCK and not p.name.startswith(".") for p in out.iterdir()):
                raise ConfigError(f"output directory {str(out)!r} is not empty and is not a coordscope run")
            meta = RunMeta(
                kind="coordcheck", run=out.resolve().name, spec=spec, widths=tuple(widths or ()),
                seeds=tuple(seeds or ()) if plan else (), steps=steps or 0, jobs=plan or (), status="running",
                description=description, probes=tuple(probes), exact=exact, versions=versions(),
                created=time.strftime("%Y-%m-%dT%H:%M:%S"), schema_version=SCHEMA_VERSION,
                extra={RECORDING: {"plan": plan is not None, "steps": steps}},
            )
            write_meta(out, meta)
            return meta
        meta = read_meta(out)
        mark = meta.extra.get(RECORDING)
        if meta.kind != "coordcheck" or not isinstance(mark, Mapping):
            made_by = "coordscope sweep" if meta.kind == "lrsweep" else "coordscope run"
            raise ConfigError(f"{str(out)!r} holds a run made by `{made_by}`; record your own loop into another "
                              "directory")
        if meta.exact != exact:
            raise ConfigError(f"{str(out)!r} was recorded with exact={meta.exact}; this job asks for exact={exact}: "
                              "the jobs of one run measure differences alike")
        if tuple(meta.probes) != tuple(probes):
            raise ConfigError(f"{str(out)!r} records probes {','.join(meta.probes)}; this job asks for "
                              f"{','.join(probes)}")
        declared = bool(mark.get("plan"))
        if plan is not None and (not declared or {(j.width, j.seed) for j in plan}
                                 != {(j.width, j.seed) for j in meta.jobs}):
            have = (f"widths {','.join(map(str, meta.widths))} x seeds {','.join(map(str, meta.seeds))}"
                    if declared else "no plan")
            raise ConfigError(f"{str(out)!r} was started with {have}; this job declares widths "
                              f"{','.join(map(str, widths or ()))} x seeds {','.join(map(str, seeds or (0,)))}")
        if steps is not None and mark.get("steps") is not None and int(mark["steps"]) != steps:
            raise ConfigError(f"{str(out)!r} records steps 0..{mark['steps']}; this job asks for 0..{steps}")
        if declared and (width, seed) not in {(j.width, j.seed) for j in meta.jobs}:
            raise ConfigError(f"{job_name(width, seed)} is not in the plan of {str(out)!r} (widths "
                              f"{','.join(map(str, meta.widths))}, seeds {','.join(map(str, meta.seeds))})")
        if (out / shard_name(width, seed)).is_file() and not overwrite:
            raise ConfigError(f"{job_name(width, seed)} is already recorded in {str(out)!r} (pass overwrite=True "
                              "to record it again)")
        return meta


_OWNED = nn.Module()  # stands for "a module of that name exists" in the shared role rules


def _scaling(info: ParamInfo, other: ParamInfo | None) -> tuple[bool, ...] | None:
    if other is None:
        return None
    return scaling_dims(info.shape, other.shape)


def _weight_role(scaling: tuple[bool, ...], embedding: bool) -> str:
    if embedding and len(scaling) >= 2:  # nn.Embedding stores [vocab, width]: fan-in first
        scaling = (scaling[1], scaling[0], *scaling[2:])
    return weight_role(scaling)


def infer_roles(jobs: Sequence[JobInfo]) -> dict[str, Layer]:
    """The role of every recorded name, from the jobs of a run (see the module docstring)."""
    if not jobs:
        return {}
    first: dict[int, JobInfo] = {}
    for job in sorted(jobs, key=lambda j: (j.width, j.seed)):
        first.setdefault(job.width, job)
    widths = sorted(first)
    small = first[widths[0]]
    large = first[widths[1]] if len(widths) > 1 else None
    declared = {n: p.declared for n, p in small.params.items() if p.declared is not None}
    if not any(any(d) for d in declared.values() if d):
        declared = {}  # mup.set_base_shapes(model, None): nothing declared, shapes decide
    layers: dict[str, Layer] = {LOSS: Layer("loss", "<loss>", (), ())}
    param_roles: dict[str, str] = {}
    for name, info in small.params.items():
        scaling = declared.get(name) or (_scaling(info, large.params.get(name, info)) if large else None)
        if scaling is None:
            continue
        role = _weight_role(scaling, info.embedding)
        param_roles[name] = role
        if info.recorded:
            layers[name] = Layer(role, info.module, info.shape, scaling)
    for name, seen in small.names.items():
        owner = _OWNED if seen.owned else None
        if large is None:
            role = recorded_role(name, seen.module, tuple(False for _ in seen.shape), owner, param_roles)
            from_weight = param_roles.get(f"{module_owner(name)}.weight") in ("input", "hidden", "output")
            if not (name == OUTPUT or role == "attn_logits" or (seen.owned and from_weight)):
                continue  # one width: its scaling is not known yet
            layers[name] = Layer(role, seen.module, seen.shape, (), False)
            continue
        other = large.names.get(name, seen)
        scaling = scaling_dims(seen.shape, other.shape)
        role = recorded_role(name, seen.module, scaling, owner, param_roles)
        rescaled = role == "output" and name != OUTPUT and not (seen.same_as_output and other.same_as_output)
        layers[name] = Layer(role, seen.module, seen.shape, scaling, rescaled)
    return layers


def restamp_roles(shard: Path, roles: Mapping[str, str]) -> None:
    """Give the rows of ``shard`` the roles ``roles`` names (other names keep theirs), replacing the file
    atomically. Read and written without ``pa.array`` or ``to_numpy``, which would import pandas into the
    recording process (see :func:`coordscope.store.int64_array`)."""
    table = pq.ParquetFile(shard).read(use_pandas_metadata=False)
    names = table.column("name").to_pylist()
    old = table.column("role").to_pylist()
    new = string_array([roles.get(name, role) for name, role in zip(names, old, strict=True)])
    table = table.set_column(table.schema.get_field_index("role"), SCHEMA.field("role"), new)
    tmp = shard.with_name(f".{shard.name}.{os.getpid()}.roles.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, shard)


def _finished(run_dir: Path) -> list[JobInfo]:
    infos = []
    for path in sorted((run_dir / JOBS).glob("w*-s*.json")):
        try:
            info = JobInfo.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{path}: damaged job record ({type(exc).__name__}: {exc})") from None
        if (run_dir / info.shard).is_file():
            infos.append(info)
    return infos


def commit_job(run_dir: Path, info: JobInfo) -> tuple[RunMeta, list[JobRecord]]:
    """Record job ``info`` (its shard already has its final name) and rebuild the run's ``meta.json``
    from every finished job; returns the new record and the planned jobs still missing."""
    with run_lock(run_dir):
        (run_dir / JOBS).mkdir(exist_ok=True)
        _write_job(run_dir, info)
        return _rebuild(run_dir)


def _write_job(run_dir: Path, info: JobInfo) -> None:
    path = run_dir / job_file(info.width, info.seed)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info.to_json(), indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _rebuild(run_dir: Path) -> tuple[RunMeta, list[JobRecord]]:
    meta = read_meta(run_dir)
    mark = dict(meta.extra.get(RECORDING) or {})
    infos = _finished(run_dir)
    layers = infer_roles(infos)
    for k, info in enumerate(infos):  # only shards whose rows carry other roles are rewritten
        changed = {name: layers[name].role for name, role in info.roles.items()
                   if name in layers and layers[name].role != role}
        if changed:
            restamp_roles(run_dir / info.shard, changed)
            infos[k] = replace(info, roles={**info.roles, **changed})
            _write_job(run_dir, infos[k])
    if mark.get("plan"):
        jobs, widths, seeds = meta.jobs, meta.widths, meta.seeds
    else:
        jobs = tuple(JobRecord(i.width, i.seed, i.shard) for i in sorted(infos, key=lambda i: (i.width, i.seed)))
        widths = tuple(sorted({i.width for i in infos}))
        seeds = tuple(sorted({i.seed for i in infos}))
    missing = missing_jobs(run_dir, replace(meta, jobs=jobs))
    hyperparameters: dict[str, Mapping[str, Mapping[str, float]]] = {}
    for info in sorted(infos, key=lambda i: (i.width, i.seed)):
        hyperparameters.setdefault(str(info.width), info.hyperparameters)
    optimizers = sorted({i.optimizer for i in infos if i.optimizer})
    first = min(infos, key=lambda i: (i.width, i.seed), default=None)
    meta = replace(
        meta, jobs=jobs, widths=widths, seeds=seeds, status="running" if missing or not infos else "complete",
        steps=int(mark["steps"]) if mark.get("steps") is not None else max((i.steps for i in infos), default=0),
        layers=layers, hyperparameters=hyperparameters, optimizer=", ".join(optimizers),
        lr=first.lr if first else meta.lr, device=first.device if first else meta.device,
        dtype=first.dtype if first else meta.dtype, error=None if not missing else meta.error,
        updated=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    write_meta(run_dir, meta)
    return meta, missing


def mark_failed(run_dir: Path, width: int, seed: int, error: str) -> None:
    """Note in ``meta.json`` that job (width, seed) failed: a run with a plan becomes ``incomplete``."""
    with run_lock(run_dir):
        meta = read_meta(run_dir)
        planned = bool((meta.extra.get(RECORDING) or {}).get("plan"))
        write_meta(run_dir, replace(meta, status="incomplete" if planned else meta.status,
                                    error=f"{job_name(width, seed)}: {error}".split("\n")[0],
                                    updated=time.strftime("%Y-%m-%dT%H:%M:%S")))


def pending(run_dir: str | os.PathLike[str]) -> list[tuple[int, int]]:
    """The (width, seed) of every planned job of a recorded run whose shard is not there yet (none for a run
    without a plan)."""
    return [(job.width, job.seed) for job in missing_jobs(Path(run_dir))]


def describe(missing: Sequence[JobRecord] | Sequence[tuple[int, int]], limit: int = 8) -> str:
    """``width 512 seed 0, width 1024 seed 0, …`` for a message."""
    pairs = [(j.width, j.seed) if isinstance(j, JobRecord) else j for j in missing]
    text = ", ".join(job_name(w, s) for w, s in pairs[:limit])
    return text + (f" and {len(pairs) - limit} more" if len(pairs) > limit else "")
