"""The coord-check store: a run directory of ``meta.json`` (:mod:`coordscope.runmeta`) plus one Parquet
shard per job.

Rows are long-format, one value each (:data:`SCHEMA`). A job streams its rows into a shard as steps
complete (bounded row groups), under a temporary name that is renamed only when the job finishes, so a
file with a final name is always a whole job. Everything that reads runs — ``check``, the report, the
app — goes through :func:`scan`/:func:`load` here.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from coordscope.choices import SITES as SITES
from coordscope.errors import ConfigError, StoreError
from coordscope.runmeta import META, JobRecord, RunMeta, read_meta

if TYPE_CHECKING:
    import polars as pl  # imported where runs are read: a recording process never needs it (23 MB)

SCHEMA = pa.schema(
    [
        ("run", pa.string()),
        ("width", pa.int64()),
        ("seed", pa.int64()),
        ("step", pa.int64()),
        ("name", pa.string()),
        ("site", pa.string()),
        ("probe", pa.string()),
        ("value", pa.float64()),
        # Beyond the contract's eight columns: what the name is, so readers need no model.
        ("role", pa.string()),  # input | hidden | output | vector | fixed | attn_logits | loss
        ("module", pa.string()),  # module class name, "Parameter", "tap", "<output>" or "<loss>"
    ]
)
CONTRACT_COLUMNS: tuple[str, ...] = ("run", "width", "seed", "step", "name", "site", "probe", "value")
# A depth sweep's shards carry the depth of every row too (schema version 2); stores without it still read.
DEPTH_SCHEMA = SCHEMA.insert(2, pa.field("depth", pa.int64()))

SHARD_GLOB = "shard-*.parquet"


def shard_name(width: int, seed: int, depth: int | None = None, dims: Mapping[str, int] | None = None) -> str:
    """The final file name of the shard of job (width, seed), (width, depth, seed) in a depth sweep, or
    (width, dimension value, seed) in a dimension sweep (``shard-w128-d_ff256-s0.parquet``)."""
    sizes = "".join(f"-{k}{v}" for k, v in (dims or {}).items())
    return f"shard-w{width}{sizes}-s{seed}.parquet" if depth is None else f"shard-w{width}-d{depth}-s{seed}.parquet"


def with_dims(schema: pa.Schema, dims: Mapping[str, int] | None) -> pa.Schema:
    """``schema`` with an int64 column per swept dimension, after ``width`` (schema version 3)."""
    for offset, name in enumerate(dims or {}):
        schema = schema.insert(2 + offset, pa.field(name, pa.int64()))
    return schema


ROW_GROUP_ROWS = 1024
_COLUMNS = ("step", "name", "site", "probe", "role", "module")


def int64_array(values: np.ndarray) -> pa.Array:
    """An Arrow int64 array built from its buffer. Why not ``pa.array``: it imports pandas (66 MB) to check
    whether it was handed pandas data — in a recording process, 15 % of a small model's training memory."""
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(np.ascontiguousarray(values))])


def string_array(values: Sequence[str]) -> pa.Array:
    """An Arrow string array built from its buffers (see :func:`int64_array`)."""
    encoded = [v.encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return pa.StringArray.from_buffers(len(encoded), pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded)))


class ShardWriter:
    """Streams one job's rows into a Parquet shard as steps complete.

    Rows are buffered as plain column lists up to :data:`ROW_GROUP_ROWS` and then written as one row group:
    memory stays bounded however many steps a job has, without paying Parquet's (and Arrow's per-array)
    cost at every step — the shard is not readable before :meth:`commit` anyway. The shard lives under a
    dot-prefixed temporary name until :meth:`commit` renames it; :meth:`abort` deletes it. Use as a
    context manager: an exception inside aborts.
    """

    def __init__(self, run_dir: Path, run: str, width: int, seed: int, filename: str | None = None,
                 schema: pa.Schema = SCHEMA, depth: int | None = None, dims: Mapping[str, int] | None = None) -> None:
        self.final = Path(run_dir) / (filename or shard_name(width, seed, depth, dims))
        self.tmp = self.final.with_name(f".{self.final.name}.{os.getpid()}.tmp")
        self.run, self.width, self.seed, self.depth, self.dims = run, width, seed, depth, dict(dims or {})
        rows_schema = with_dims(DEPTH_SCHEMA if depth is not None else SCHEMA, dims)
        if schema is SCHEMA:
            schema = rows_schema
        self._rows_schema = rows_schema
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(self.tmp, schema, compression="zstd")
        self._buffer: dict[str, list[Any]] = {c: [] for c in _COLUMNS}
        self._values: list[np.ndarray] = []  # one float64 array per step: no Python float per row
        self.rows = 0

    def write(
        self,
        step: int,
        names: Sequence[str],
        sites: Sequence[str],
        probes: Sequence[str],
        values: Sequence[float] | Any,
        roles: Sequence[str],
        modules: Sequence[str],
    ) -> None:
        """Append one step's rows (parallel sequences, one entry per row)."""
        n = len(names)
        columns = {"name": names, "site": sites, "probe": probes, "role": roles, "module": modules}
        self._values.append(np.asarray(values, dtype=np.float64))
        self._buffer["step"].extend([step] * n)
        for key, column in columns.items():
            self._buffer[key].extend(column)
        self.rows += n
        if len(self._buffer["step"]) >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        assert self._writer is not None, "shard already closed"
        n = len(self._buffer["step"])
        if n:
            columns = {
                "run": string_array([self.run] * n),
                "width": int64_array(np.full(n, self.width, dtype=np.int64)),
                "seed": int64_array(np.full(n, self.seed, dtype=np.int64)),
                "depth": int64_array(np.full(n, -1 if self.depth is None else self.depth, dtype=np.int64)),
                **{k: int64_array(np.full(n, v, dtype=np.int64)) for k, v in self.dims.items()},
                "step": int64_array(np.asarray(self._buffer["step"], dtype=np.int64)),
                **{c: string_array(self._buffer[c]) for c in _COLUMNS if c != "step"},
                "value": pa.Array.from_buffers(pa.float64(), n, [None, pa.py_buffer(np.concatenate(self._values))]),
            }
            schema = self._rows_schema
            self._writer.write_table(pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema))
        self._clear()

    def _clear(self) -> None:
        for column in self._buffer.values():
            column.clear()
        self._values.clear()

    def write_table(self, table: pa.Table) -> None:
        """Append rows already shaped as the writer's schema (the LR sweep passes its own ``schema``)."""
        self._flush()
        assert self._writer is not None, "shard already closed"
        self._writer.write_table(table)
        self.rows += table.num_rows

    def commit(self) -> Path:
        """Close the file and give it its final name: from now on it is a finished job."""
        if self._writer is not None:
            self._flush()
            self._writer.close()
            self._writer = None
        os.replace(self.tmp, self.final)
        return self.final

    def abort(self) -> None:
        """Close and delete the temporary file (the job did not finish)."""
        self._clear()
        if self._writer is not None:
            try:
                self._writer.close()
            finally:
                self._writer = None
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.abort()


def prepare_run_dir(out: str | os.PathLike[str], *, overwrite: bool = False, resume: bool = False) -> Path:
    """Create the run directory ``out``, refusing to clobber anything by accident.

    A path that is a file, or a non-empty directory, is refused unless ``overwrite`` (which deletes it,
    but only if it is a coordscope run) or ``resume`` (which keeps it; the caller checks its meta).
    """
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output path {str(path)!r} is a file, not a directory")
    if path.is_dir() and any(path.iterdir()):
        if resume:
            read_meta(path)
            return path
        if not overwrite:
            raise ConfigError(f"output directory {str(path)!r} is not empty "
                              "(use --overwrite to replace it, or --resume to continue it)")
        if not (path / META).is_file():
            raise ConfigError(f"refusing to overwrite {str(path)!r}: it is not a coordscope run (no {META})")
        shutil.rmtree(path)
    elif resume:
        raise ConfigError(f"nothing to resume in {str(path)!r} (no run there)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output directory {str(path)!r}: {exc.strerror}") from exc
    return path


def remove_stale_temporaries(run_dir: str | os.PathLike[str]) -> int:
    """Delete the temporary files a killed run left behind — half-written shards, a half-written
    ``meta.json`` — before resuming it; returns how many."""
    stale = list(Path(run_dir).glob(".*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def missing_jobs(run_dir: str | os.PathLike[str], meta: RunMeta | None = None) -> list[JobRecord]:
    """The planned jobs of a run whose shard is not on disk (a killed or still-running run has some)."""
    meta = meta if meta is not None else read_meta(run_dir)
    return [job for job in meta.jobs if not (Path(run_dir) / job.shard).is_file()]


def is_complete(run_dir: str | os.PathLike[str], meta: RunMeta | None = None) -> bool:
    """True when the run finished (status ``complete``) and every planned shard is there."""
    meta = meta if meta is not None else read_meta(run_dir)
    return meta.status == "complete" and not missing_jobs(run_dir, meta)


def shard_paths(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The finished shards of a run (temporary files of unfinished jobs are never included)."""
    return sorted(Path(run_dir).glob(SHARD_GLOB))


def check_shard(path: Path) -> None:
    """Raise a StoreError naming ``path`` when it is not a readable coordscope shard (the app uses this
    to name a damaged shard and still show the others)."""
    try:
        schema = pq.read_schema(path)
    except Exception as exc:
        raise StoreError(f"{path}: damaged Parquet shard ({type(exc).__name__}: {exc})") from exc
    missing = [c for c in CONTRACT_COLUMNS if c not in schema.names]
    if missing:
        raise StoreError(f"{path}: not a coordscope shard (missing columns {', '.join(missing)})")


def _check_shards(paths: Iterable[Path]) -> None:
    for path in paths:
        check_shard(path)


def scan(run_dir: str | os.PathLike[str], *, check: bool = True) -> pl.LazyFrame:
    """A lazy polars scan over a run's finished shards (validated unless ``check=False``)."""
    import polars as pl

    read_meta(run_dir)
    paths = shard_paths(run_dir)
    if not paths:
        raise StoreError(f"{run_dir}: no finished shards yet")
    if check:
        _check_shards(paths)
    return pl.scan_parquet([str(p) for p in paths], glob=False)  # a run dir may hold [ ] * ?


def along_axis(rows: pl.LazyFrame, meta: RunMeta) -> pl.LazyFrame:
    """The rows with ``width`` holding what the run's fits are against: in a dimension sweep the swept
    dimension's column (the width is fixed there, and kept in ``meta.json``); any other run as it is. Every
    fit, table and chart of a width check then serves a dimension sweep unchanged."""
    import polars as pl

    axis = meta.axis()
    return rows if axis is None else rows.with_columns(width=pl.col(axis))


def load(run_dir: str | os.PathLike[str]) -> pl.DataFrame:
    """All rows of a run as a polars DataFrame (the contract's columns plus ``role`` and ``module``)."""
    try:
        return scan(run_dir).collect()
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"{run_dir}: cannot read shards ({type(exc).__name__}: {exc})") from exc


def local_dir(out: str | os.PathLike[str]) -> Path:
    """A local path for ``out``: a path, or a URI that pyarrow resolves to the local filesystem."""
    text = os.fspath(out)
    if "://" not in text:
        return Path(text)
    from pyarrow import fs

    try:
        filesystem, path = fs.FileSystem.from_uri(text)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"output {text!r}: not a filesystem URI pyarrow understands ({first_line})") from None
    if not isinstance(filesystem, fs.LocalFileSystem):
        raise ConfigError(f"output {text!r}: only local directories and file:// URIs are supported "
                          f"(got a {type(filesystem).__name__})")
    return Path(path)
