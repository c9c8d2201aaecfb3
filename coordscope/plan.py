"""Settings of a run, resolved and checked once: flags and arguments win over the spec's ``DEFAULTS``,
which win over coordscope's defaults. Every check raises a one-line :class:`ConfigError`, so the CLI
(exit 2) and the Python API refuse the same inputs with the same words."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from coordscope.errors import ConfigError
from coordscope.probe import DEFAULT_PROBES, resolve_probes

DEFAULTS: dict[str, Any] = {"widths": [64, 128, 256, 512], "steps": 5, "seeds": 3, "lr": 0.01}


@dataclass(frozen=True)
class Settings:
    """A coordinate check's grid and training settings, validated."""

    widths: tuple[int, ...]
    seeds: tuple[int, ...]
    steps: int
    lr: float
    probes: tuple[str, ...]


def check_widths(widths: Any) -> tuple[int, ...]:
    """At least two distinct positive integer widths, in increasing order."""
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
    if len(widths) < 2:
        raise ConfigError(f"a coordinate check needs at least two widths to fit a slope, got {list(widths)}")
    return tuple(widths)


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


def resolve(spec_defaults: Mapping[str, Any], *, widths: Any = None, seeds: Any = None, steps: Any = None,
            lr: Any = None, probes: Any = None) -> Settings:
    """Arguments, else the spec's defaults, else :data:`DEFAULTS` — then checked."""

    def pick(key: str, value: Any) -> Any:
        return value if value is not None else spec_defaults.get(key, DEFAULTS.get(key))

    probe_names = pick("probes", probes) or DEFAULT_PROBES
    if isinstance(probe_names, str):
        probe_names = [p.strip() for p in probe_names.split(",") if p.strip()]
    resolve_probes(list(probe_names))  # fail now, not inside a worker
    return Settings(
        widths=check_widths(pick("widths", widths)),
        seeds=check_seeds(pick("seeds", seeds)),
        steps=check_steps(pick("steps", steps)),
        lr=check_lr(pick("lr", lr)),
        probes=tuple(probe_names),
    )
