"""A run's settings, resolved once: flags (or keyword arguments), then ``[tool.coordscope]`` in the
user's pyproject.toml, then the spec's ``DEFAULTS``, then coordscope's own — into one frozen
:class:`RunSettings`, validated before anything touches the disk.

Every check raises a one-line :class:`ConfigError`, so the CLI (exit 2) and the Python API refuse the same
inputs with the same words, and a bad executor or device is refused before a run directory exists.
A coordinate check reads ``[tool.coordscope]`` and the spec's top-level ``DEFAULTS``; an LR sweep reads
``[tool.coordscope.sweep]`` and ``DEFAULTS["sweep"]``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from coordscope.choices import EXECUTORS
from coordscope.config import Config, ConfigSource, load_config
from coordscope.device import check_device, check_dtype
from coordscope.errors import ConfigError
from coordscope.probe_select import DEFAULT_PROBES, resolve_probes
from coordscope.spec import Spec, load_spec
from coordscope.store import local_dir

COORDCHECK_PROBES: tuple[str, ...] = (*DEFAULT_PROBES, "spectral")
"""What a coordinate check records by default: ``rms`` of every site, and the spectral norms of every weight
matrix and of its update (judged relative to each other as the spectral condition, docs/theory.md; updates of
matrices up to :data:`coordscope.stats.WHOLE_UPDATES` entries). A user's own loop (``coordscope.recording``)
keeps :data:`DEFAULT_PROBES` alone: it runs real training, often under torchrun, where only sums of squares
combine across ranks."""
COORDCHECK_DEFAULTS: dict[str, Any] = {"widths": [64, 128, 256, 512], "depths": None, "dim": None, "steps": 5,
                                       "seeds": 3,
                                       "lr": 0.01,
                                       "probes": list(COORDCHECK_PROBES), "device": "cpu", "dtype": "float32",
                                       "executor": "inline", "exact": False}
SWEEP_DEFAULTS: dict[str, Any] = {"widths": [64, 128, 256, 512], "depths": None,
                                  "lrs": [2.0**e for e in range(-14, -3)], "steps": 100, "seeds": 1, "device": "cpu",
                                  "executor": "inline"}
EVAL_BATCHES = 8  # held-out batches each sweep job is scored on at the end
DEPTH_SWEEP_WIDTH = 128  # the one width of a depth or dimension sweep when no widths are set anywhere


@dataclass(frozen=True)
class RunSettings:
    """Everything a coordinate check (``kind`` ``coordcheck``) or an LR sweep (``lrsweep``) runs with.

    ``lr`` and ``probes`` belong to coord checks, ``lrs`` and ``eval_batches`` to sweeps (None / empty
    otherwise). ``out`` is the run directory, ``runs/<spec>-<time>`` unless one was named.
    """

    kind: str
    spec: Spec
    widths: tuple[int, ...]
    seeds: tuple[int, ...]
    steps: int
    out: Path
    lr: float | None = None
    lrs: tuple[float, ...] | None = None
    probes: tuple[str, ...] = ()
    eval_batches: int | None = None
    device: str = "cpu"
    dtype: str = "float32"
    executor: str = "inline"
    workers: int | None = None
    overwrite: bool = False
    resume: bool = False
    progress: bool = True
    exact: bool = False
    """Differences (``param_update``, ``act_delta``) on every entry of big tensors, not a fixed subset
    (:mod:`coordscope.sampling`)."""
    depths: tuple[int, ...] | None = None
    """The depths swept (``model(width, depth)``), or None: the spec's model takes the width only."""
    dim: tuple[str, tuple[int, ...]] | None = None
    """A declared dimension swept on its own at one width (``model(width, d_ff=v)``): its name and values."""

    def plan(self) -> dict[str, Any]:
        """What decides the rows a run records: a resumed run must ask for exactly this again."""
        return {"spec": self.spec.ref, "widths": list(self.widths), "seeds": list(self.seeds), "steps": self.steps,
                "lr": self.lr, "lrs": None if self.lrs is None else list(self.lrs), "probes": list(self.probes),
                "eval_batches": self.eval_batches, "exact": self.exact,
                "depths": None if self.depths is None else list(self.depths),
                "dims": None if self.dim is None else {self.dim[0]: list(self.dim[1])}}


def check_widths(widths: Any, minimum: int = 2) -> tuple[int, ...]:
    """At least two (``minimum``: one when depth is swept) distinct positive integer widths, increasing."""
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise ConfigError(f"widths must be a list of integers, got {widths!r}")
    for w in widths:
        if isinstance(w, bool) or not isinstance(w, int):
            raise ConfigError(f"widths must be integers, got {w!r}")
        if w <= 0:
            raise ConfigError(f"widths must be positive, got {w}")
    if len(set(widths)) != len(widths):
        raise ConfigError(f"widths contain duplicates: {list(widths)}")
    if list(widths) != sorted(widths):
        raise ConfigError(f"widths must be increasing, got {list(widths)}")
    if len(widths) < minimum:
        raise ConfigError(f"a coordinate check needs at least two widths to fit a slope, got {list(widths)}")
    return tuple(widths)


def check_sizes(sizes: Any, what: str = "depths", sweep: str = "a depth sweep") -> tuple[int, ...]:
    """At least two distinct positive integer sizes (depths, or values of a declared dimension), increasing."""
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
        raise ConfigError(f"{what} must be a list of integers, got {sizes!r}")
    for d in sizes:
        if isinstance(d, bool) or not isinstance(d, int):
            raise ConfigError(f"{what} must be integers, got {d!r}")
        if d <= 0:
            raise ConfigError(f"{what} must be positive, got {d}")
    if len(set(sizes)) != len(sizes):
        raise ConfigError(f"{what} contain duplicates: {list(sizes)}")
    if list(sizes) != sorted(sizes):
        raise ConfigError(f"{what} must be increasing, got {list(sizes)}")
    if len(sizes) < 2:
        raise ConfigError(f"{sweep} needs at least two {what} to fit a slope, got {list(sizes)}")
    return tuple(sizes)


def check_dim(dim: Any, spec: Spec) -> tuple[str, tuple[int, ...]]:
    """The dimension to sweep: a name the spec declares in ``DIMENSIONS`` (``"d_ff"``: its declared values),
    ``"d_ff=64,128,256"`` (the CLI's form) or ``("d_ff", [64, 128, 256])``."""
    if isinstance(dim, str):
        name, _, listed = dim.partition("=")
        name = name.strip()
        try:
            values: Any = [int(v) for v in listed.split(",") if v.strip()] if listed else None
        except ValueError:
            raise ConfigError(f"--dim {dim!r}: the values must be comma-separated integers "
                              "(--dim d_ff=64,128,256)") from None
    elif isinstance(dim, Sequence) and len(dim) == 2 and isinstance(dim[0], str):
        name, values = dim[0], list(dim[1])
    else:
        raise ConfigError(f"dim must be a name or name=v1,v2,…, got {dim!r}")
    if name not in spec.dimensions:
        declared = ", ".join(spec.dimensions) or "none"
        raise ConfigError(f"spec {spec.ref!r} declares no dimension {name!r} (declared: {declared}); "
                          f"name it in the spec's DIMENSIONS, e.g. DIMENSIONS = {{{name!r}: [64, 128, 256, 512]}}")
    if not values:
        values = list(spec.dimensions[name])
        if not values:
            raise ConfigError(f"spec {spec.ref!r} declares {name!r} without values: give them, "
                              f"--dim {name}=64,128,256,512")
    return name, check_sizes(values, f"{name} values", f"a sweep of {name}")


def check_seeds(seeds: Any) -> tuple[int, ...]:
    """A count N (seeds 0..N−1) or an explicit list of distinct non-negative integer seeds."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ConfigError(f"seeds must be at least 1, got {seeds}")
        return tuple(range(seeds))
    if isinstance(seeds, Sequence) and not isinstance(seeds, (str, bytes)) and seeds:
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
            raise ConfigError(f"seeds must be non-negative integers, got {list(seeds)}")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"seeds contain duplicates: {list(seeds)}")
        return tuple(seeds)
    raise ConfigError(f"seeds must be a count or a list of integers, got {seeds!r}")


def check_steps(steps: Any) -> int:
    """A positive number of optimizer steps."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be a positive integer, got {steps!r}")
    return steps


def check_lr(lr: Any, what: str = "lr") -> float:
    """A positive, finite learning rate."""
    try:
        value = float(lr)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {lr!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{what} must be positive and finite, got {lr!r}")
    return value


def check_lrs(lrs: Any) -> tuple[float, ...]:
    """At least three distinct positive learning rates, increasing (a parabola needs three points)."""
    if isinstance(lrs, (str, bytes)) or not isinstance(lrs, Sequence):
        raise ConfigError(f"lrs must be a list of numbers, got {lrs!r}")
    values = tuple(check_lr(lr, "lrs") for lr in lrs)
    if len(values) < 3:
        raise ConfigError(f"a sweep needs at least three learning rates, got {list(values)}")
    if any(b <= a for a, b in pairwise(values)):
        raise ConfigError(f"lrs must be increasing and distinct, got {list(values)}")
    return values


def check_positive_int(what: str, value: Any) -> int:
    """A positive integer (workers, eval batches)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    return value


def check_executor(executor: Any, spec: Spec) -> str:
    """A known executor; one that runs jobs in other processes needs a spec they can import by name."""
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r} (choose from {', '.join(EXECUTORS)})")
    if executor != "inline" and spec.ref == "<object>":
        raise ConfigError(f"executor {executor!r} needs a spec that workers can import: pass a file, module, "
                          "module:attr or sample name instead of a Spec object (or give the Spec a ref)")
    return str(executor)


def default_out(spec: Spec) -> Path:
    """``runs/<spec>-<time>``: a fresh directory per run unless the user names one."""
    stem = Path(spec.ref.split(":")[-1]).stem.replace("/", "_") or "run"
    return Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def _config(config: ConfigSource) -> Config:
    return config if isinstance(config, Config) else load_config(config)


def _picker(given: Mapping[str, Any], *layers: Mapping[str, Any]) -> Any:
    """``pick(key)``: the first value that is set, from ``given`` through ``layers``."""
    def pick(key: str) -> Any:
        for source in (given, *layers):
            if source.get(key) is not None:
                return source[key]
        return None

    return pick


def _probe_names(value: Any) -> tuple[str, ...]:
    names = [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else list(value)
    resolve_probes(names)  # fail now, not inside a worker
    return tuple(names)


def resolve_run(spec: Spec | str, *, config: ConfigSource = None, out: Any = None, overwrite: bool = False,
                resume: bool = False, progress: bool = True, **given: Any) -> RunSettings:
    """The settings of a coordinate check of ``spec``; ``given`` holds widths, depths, dim, seeds, steps, lr,
    probes, device, dtype, executor, workers and exact (None: unset). With depths (two or more), the spec's
    ``model(width, depth)`` is called, one width is enough, and without widths set anywhere the depth sweep
    runs at :data:`DEPTH_SWEEP_WIDTH`. With ``dim`` (:func:`check_dim`) one declared dimension is swept at
    one width (the same default), ``model(width, name=v)``."""
    unknown = sorted(set(given) - set(COORDCHECK_DEFAULTS) - {"workers"})
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r} for a coordinate check")
    spec = load_spec(spec)
    pick = _picker(given, _config(config).run, spec.defaults, COORDCHECK_DEFAULTS)
    workers = pick("workers")
    depths = None if pick("depths") is None else check_sizes(pick("depths"))
    dim = None if pick("dim") is None else check_dim(pick("dim"), spec)
    widths = pick("widths")
    if (depths is not None or dim is not None) and widths is COORDCHECK_DEFAULTS["widths"]:
        widths = [DEPTH_SWEEP_WIDTH]  # a depth or dimension sweep at one width unless widths were asked for
    if dim is not None and depths is not None:
        raise ConfigError(f"sweep {dim[0]} or depth, not both: a dimension sweep fits against {dim[0]} alone")
    if dim is not None and len(widths) != 1:
        raise ConfigError(f"a sweep of {dim[0]} runs at one width (the others stay fixed), got widths {list(widths)}: "
                          "pass --widths W")
    return RunSettings(
        kind="coordcheck", spec=spec, widths=check_widths(widths, 1 if depths or dim else 2), depths=depths, dim=dim,
        seeds=check_seeds(pick("seeds")),
        steps=check_steps(pick("steps")), lr=check_lr(pick("lr")), probes=_probe_names(pick("probes")),
        device=check_device(pick("device")), dtype=check_dtype(pick("dtype")),
        executor=check_executor(pick("executor"), spec),
        workers=None if workers is None else check_positive_int("workers", workers),
        out=Path(out) if out is not None else default_out(spec), overwrite=overwrite, resume=resume,
        progress=progress, exact=_flag("exact", pick("exact")),
    )


def _flag(what: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{what} must be true or false, got {value!r}")
    return value


def resolve_sweep(spec: Spec | str, *, config: ConfigSource = None, out: Any = None, overwrite: bool = False,
                  resume: bool = False, progress: bool = True, eval_batches: int = EVAL_BATCHES,
                  **given: Any) -> RunSettings:
    """The settings of an LR sweep of ``spec``; ``given`` holds widths, depths, lrs, steps, seeds, device,
    executor and workers (None: unset). With depths (two or more) the spec's ``model(width, depth)`` is
    called, one width is enough, and without widths set anywhere the sweep runs at one width, as a depth
    coordinate check does."""
    unknown = sorted(set(given) - set(SWEEP_DEFAULTS) - {"workers"})
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r} for an LR sweep")
    spec = load_spec(spec)
    spec_sweep = spec.defaults.get("sweep") or {}
    if not isinstance(spec_sweep, Mapping):
        raise ConfigError(f"spec {spec.ref!r}: DEFAULTS['sweep'] must be a dict")
    pick = _picker(given, _config(config).sweep, spec_sweep, SWEEP_DEFAULTS)
    workers = pick("workers")
    depths = None if pick("depths") is None else check_sizes(pick("depths"))
    widths = pick("widths")
    if depths is not None and widths is SWEEP_DEFAULTS["widths"]:
        widths = [DEPTH_SWEEP_WIDTH]
    return RunSettings(
        kind="lrsweep", spec=spec, widths=check_widths(widths, 1 if depths else 2), depths=depths,
        seeds=check_seeds(pick("seeds")), steps=check_steps(pick("steps")), lrs=check_lrs(pick("lrs")),
        eval_batches=check_positive_int("eval_batches", eval_batches), device=check_device(pick("device")),
        executor=check_executor(pick("executor"), spec),
        workers=None if workers is None else check_positive_int("workers", workers),
        out=local_dir(out) if out is not None else default_out(spec), overwrite=overwrite, resume=resume,
        progress=progress,
    )
