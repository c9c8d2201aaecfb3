"""A run's record, ``meta.json``: what was run, how, and how far it got — typed, written and read here only.

Every reader (``check``, the report, the dashboard, resume) gets a :class:`RunMeta`, never a raw dict, so
a key is spelled once. ``meta.json`` is replaced atomically (a reader never sees half of it). Keys written
by a newer coordscope that this one does not know are kept in :attr:`RunMeta.extra` and written back
unchanged; a store with a newer schema version is refused with a one-line :class:`StoreError`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from coordscope.errors import StoreError
from coordscope.roles import Layer

SCHEMA_VERSION = 3  # 3: dimension sweeps (``dims``, jobs' ``dims``, a column per dimension); 2: depth sweeps
# (``depths``, jobs' ``depth``, a ``depth`` column). Versions 1 and 2 are still read.
META = "meta.json"
KINDS: tuple[str, ...] = ("coordcheck", "lrsweep")
STATUSES: tuple[str, ...] = ("running", "complete", "incomplete")

RECORDING = "recording"
"""The ``meta.json`` key that marks a run recorded by :func:`coordscope.recording`: ``{"plan": bool,
"steps": int | None}``."""


@dataclass(frozen=True)
class JobRecord:
    """One planned job: its width and seed (and learning rate, in a sweep; depth, in a depth sweep), and its
    shard's file name."""

    width: int
    seed: int
    shard: str
    lr: float | None = None
    depth: int | None = None
    dims: tuple[tuple[str, int], ...] = ()  # in a dimension sweep: (("d_ff", 256),) — a tuple keeps it hashable

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"width": self.width, "seed": self.seed, "shard": self.shard}
        if self.lr is not None:
            out["lr"] = self.lr
        if self.depth is not None:
            out["depth"] = self.depth
        if self.dims:
            out["dims"] = dict(self.dims)
        return out

    def size(self) -> str:
        """Where this job sits on the scaling axes, for messages: ``width 128 d_ff 256``."""
        parts = [f"width {self.width}"] + ([f"depth {self.depth}"] if self.depth is not None else [])
        return " ".join(parts + [f"{k} {v}" for k, v in self.dims])


@dataclass(frozen=True)
class RunMeta:
    """``meta.json`` of a run (DESIGN.md, coord-check store).

    ``kind``: ``coordcheck`` or ``lrsweep``; ``status``: ``running`` until the last job, then ``complete``,
    or ``incomplete`` after a failure or Ctrl-C (a run killed outright stays ``running`` with shards
    missing). ``jobs`` is the plan; ``layers`` (coord checks) the role of every recorded name.
    ``exact``: differences measured on every entry, not on a fixed subset (:mod:`coordscope.sampling`).
    ``optimizer`` is the class name of the optimizer the spec built; ``hyperparameters`` (coord checks) the
    lr, weight decay and ε in effect for every parameter at every width (:mod:`coordscope.hyperparams`).
    """

    kind: str
    run: str
    spec: str
    widths: tuple[int, ...]
    seeds: tuple[int, ...]
    steps: int
    jobs: tuple[JobRecord, ...]
    status: str = "running"
    description: str = ""
    lr: float | None = None
    lrs: tuple[float, ...] | None = None
    probes: tuple[str, ...] = ()
    optimizer: str = ""
    device: str = "cpu"
    dtype: str = "float32"
    eval_batches: int | None = None
    exact: bool = False
    layers: Mapping[str, Layer] = field(default_factory=dict)
    hyperparameters: Mapping[str, Mapping[str, Mapping[str, float]]] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)
    created: str = ""
    updated: str | None = None
    error: str | None = None
    schema_version: int = SCHEMA_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)
    depths: tuple[int, ...] | None = None
    """The depths of a depth sweep (``model(width, depth)``; rows carry a ``depth`` column), else None."""
    depth_hyperparameters: Mapping[str, Mapping[str, Mapping[str, float]]] = field(default_factory=dict)
    """In a depth sweep: the lr, weight decay and ε of every parameter at every depth (smallest width)."""
    dims: Mapping[str, tuple[int, ...]] | None = None
    """A dimension sweep's dimension and its values (``{"d_ff": (64, 128, 256)}``; rows carry a ``d_ff``
    column and are fitted against it), else None. ``hyperparameters`` are then keyed by its values."""

    def axis(self) -> str | None:
        """The declared dimension a dimension sweep fits against, else None (width, or depth)."""
        return next(iter(self.dims)) if self.dims else None

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to ``meta.json`` (unset optional keys left out)."""
        out: dict[str, Any] = dict(self.extra)
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or (value is None and f.name not in ("lr", "error")) or (
                    f.name == "depth_hyperparameters" and not value):
                continue
            if f.name == "jobs":
                value = [job.to_json() for job in value]
            elif f.name == "layers":
                value = {name: layer.to_json() for name, layer in value.items()}
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out

    @staticmethod
    def from_json(data: Mapping[str, Any], where: str = META) -> RunMeta:
        """Parse a ``meta.json`` object; a missing or mistyped key is a one-line :class:`StoreError`."""
        known = {f.name for f in fields(RunMeta)}
        try:
            lrs = data.get("lrs")
            return RunMeta(
                kind=str(data.get("kind", "coordcheck")),
                run=str(data["run"]),
                spec=str(data["spec"]),
                widths=tuple(int(w) for w in data["widths"]),
                seeds=tuple(int(s) for s in data["seeds"]),
                steps=int(data["steps"]),
                jobs=tuple(JobRecord(int(j["width"]), int(j["seed"]), str(j["shard"]),
                                     None if j.get("lr") is None else float(j["lr"]),
                                     None if j.get("depth") is None else int(j["depth"]),
                                     tuple((str(k), int(v)) for k, v in (j.get("dims") or {}).items()))
                          for j in data["jobs"]),
                status=str(data.get("status", "running")),
                description=str(data.get("description") or ""),
                lr=None if data.get("lr") is None else float(data["lr"]),
                lrs=None if lrs is None else tuple(float(x) for x in lrs),
                probes=tuple(str(p) for p in data.get("probes") or ()),
                optimizer=str(data.get("optimizer") or ""),
                device=str(data.get("device", "cpu")),
                dtype=str(data.get("dtype", "float32")),
                eval_batches=None if data.get("eval_batches") is None else int(data["eval_batches"]),
                exact=bool(data.get("exact", False)),
                layers={str(n): Layer.from_json(v) for n, v in (data.get("layers") or {}).items()},
                hyperparameters={str(w): {str(n): {str(k): float(x) for k, x in values.items()}
                                          for n, values in params.items()}
                                 for w, params in (data.get("hyperparameters") or {}).items()},
                versions={str(k): str(v) for k, v in (data.get("versions") or {}).items()},
                created=str(data.get("created") or ""),
                updated=data.get("updated"),
                error=data.get("error"),
                schema_version=int(data.get("schema_version", 1)),
                extra={k: v for k, v in data.items() if k not in known},
                depths=None if data.get("depths") is None else tuple(int(d) for d in data["depths"]),
                depth_hyperparameters={str(d): {str(n): {str(k): float(x) for k, x in values.items()}
                                                for n, values in params.items()}
                                       for d, params in (data.get("depth_hyperparameters") or {}).items()},
                dims={str(k): tuple(int(v) for v in values) for k, values in data["dims"].items()}
                if data.get("dims") else None,
            )
        except KeyError as exc:
            raise StoreError(f"{where}: missing key {exc.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise StoreError(f"{where}: malformed ({type(exc).__name__}: {exc})") from None


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_meta(run_dir: str | os.PathLike[str], meta: RunMeta) -> None:
    """Write ``meta.json`` atomically (a reader never sees half of it)."""
    _atomic_write_text(Path(run_dir) / META, json.dumps(meta.to_json(), indent=2, sort_keys=True, default=str)
                       + "\n")


def read_meta(run_dir: str | os.PathLike[str]) -> RunMeta:
    """``meta.json`` of a run, checked for presence, syntax, schema version and keys."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise StoreError(f"run directory {str(run_dir)!r} does not exist")
    path = run_dir / META
    if not path.is_file():
        raise StoreError(f"{path}: missing (not a coordscope run directory, or the run never started)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise StoreError(f"{path}: expected a JSON object")
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: written by a newer coordscope (schema {version}, this one reads {SCHEMA_VERSION}); upgrade"
        )
    return RunMeta.from_json(data, str(path))


def update_meta(run_dir: str | os.PathLike[str], **changes: Any) -> RunMeta:
    """Read, change and atomically rewrite ``meta.json``; returns the new record."""
    meta = replace(read_meta(run_dir), **changes, updated=time.strftime("%Y-%m-%dT%H:%M:%S"))
    write_meta(run_dir, meta)
    return meta
