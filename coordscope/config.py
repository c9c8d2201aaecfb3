"""Settings from ``[tool.coordscope]`` in the user's pyproject.toml, and judgement overrides.

A project that runs coordscope in CI keeps its grid and its exceptions next to its code::

    [tool.coordscope]
    widths = [64, 128, 256, 512]
    steps = 5
    seeds = 3
    tolerance = 0.25          # absolute slack on a slope, in log2-units per doubling of width
    sigma = 3.0               # ... widened to sigma × the fit's standard error when that is larger

    [[tool.coordscope.override]]
    name = "readout*"         # glob over recorded names: * and ? only
    site = "act_delta"        # a site, or "*"
    expected = [0.0, 1.0]     # a slope, or [low, high]
    tolerance = 0.4
    # ignore = true           # neither judged nor reported

    [tool.coordscope.sweep]   # coordscope sweep: widths, depths, lrs, steps, seeds, device, executor,
    lrs = [0.0001, 0.001, 0.01]   # workers, metric, tolerance, proxy_width, fail_above_proxy

Flags and keyword arguments win over the file, which wins over the spec's ``DEFAULTS``
(:mod:`coordscope.settings` resolves them). Keys and types are checked here, so a typo fails with one line
(:class:`ConfigError`) before any model is built.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coordscope.choices import SITES
from coordscope.errors import ConfigError

RUN_KEYS = ("widths", "depths", "dim", "steps", "seeds", "lr", "probes", "device", "dtype", "executor", "workers",
            "exact")
CHECK_KEYS = ("tolerance", "sigma", "probe", "override")
SWEEP_KEYS = ("widths", "depths", "lrs", "steps", "seeds", "device", "executor", "workers", "metric", "tolerance",
              "proxy_width", "fail_above_proxy")


@dataclass(frozen=True)
class Override:
    """A change to how the fits of some names are judged.

    ``pattern`` is a glob over recorded names (``*`` any run of characters, ``?`` one), ``site`` a site or
    ``"*"``, ``probe`` a probe name or None for every probe. ``expected`` replaces the expected slope range
    (and makes the matched fits judged even on sites not judged by default); ``tolerance`` replaces the
    absolute tolerance; ``ignore`` drops the matched fits from judgement and from the findings.
    """

    pattern: str
    site: str = "*"
    probe: str | None = None
    expected: tuple[float, float] | None = None
    tolerance: float | None = None
    ignore: bool = False

    def __post_init__(self) -> None:
        if not self.pattern:
            raise ConfigError(f"override {self.describe()}: the name pattern is empty (use * for every name)")
        if self.site != "*" and self.site not in SITES:
            raise ConfigError(f"override {self.describe()}: unknown site {self.site!r} "
                              f"(choose from {', '.join(SITES)} or *)")
        if self.expected is not None:
            lo, hi = self.expected
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
                raise ConfigError(f"override {self.describe()}: expected must be a finite slope or a range "
                                  "low..high with low <= high")
        if self.tolerance is not None and not (math.isfinite(self.tolerance) and self.tolerance >= 0):
            raise ConfigError(f"override {self.describe()}: tolerance must be a non-negative number")
        if self.expected is None and self.tolerance is None and not self.ignore:
            raise ConfigError(f"override {self.describe()}: says nothing to do "
                              "(give expected=, tol= or ignore)")

    def describe(self) -> str:
        """``pattern:site`` (plus the probe), as the user wrote it, for messages."""
        return f"'{self.pattern}:{self.site}" + (f":probe={self.probe}'" if self.probe else "'")

    def name_regex(self) -> str:
        """The glob as an anchored regular expression (Rust/polars and Python syntax alike)."""
        parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in self.pattern]
        return "^" + "".join(parts) + "$"

    @staticmethod
    def parse(text: str) -> Override:
        """The CLI form ``PATTERN:SITE:key=value,...`` with keys ``expected`` (a slope or ``low..high``),
        ``tol``, ``probe`` and the bare word ``ignore``; e.g. ``'readout*:act_delta:expected=0..1,tol=0.4'``."""
        parts = text.rsplit(":", 2)
        if len(parts) != 3 or not parts[2].strip():
            raise ConfigError(f"--override {text!r}: expected PATTERN:SITE:key=value,... "
                              "(e.g. 'readout*:act_delta:expected=0..1,tol=0.4' or 'hidden.*:act:ignore')")
        pattern, site, options = (p.strip() for p in parts)
        values: dict[str, Any] = {}
        for item in options.split(","):
            key, eq, value = (s.strip() for s in item.partition("="))
            if key == "ignore" and not eq:
                values["ignore"] = True
            elif key == "expected" and eq:
                values["expected"] = _parse_range(f"--override {text!r}", value)
            elif key in ("tol", "tolerance") and eq:
                values["tolerance"] = _parse_number(f"--override {text!r}: tol", value)
            elif key == "probe" and eq and value:
                values["probe"] = value
            else:
                raise ConfigError(f"--override {text!r}: cannot read {item.strip()!r} "
                                  "(keys: expected=SLOPE or LOW..HIGH, tol=X, probe=NAME, ignore)")
        return Override(pattern, site, **values)

    @staticmethod
    def from_table(table: Any, where: str) -> Override:
        """One ``[[tool.coordscope.override]]`` table: keys name, site, probe, expected, tolerance, ignore."""
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}: each override must be a table, got {table!r}")
        unknown = sorted(set(table) - {"name", "site", "probe", "expected", "tolerance", "ignore"})
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r} in an override "
                              "(keys: name, site, probe, expected, tolerance, ignore)")
        name, site, probe = table.get("name"), table.get("site", "*"), table.get("probe")
        if not isinstance(name, str):
            raise ConfigError(f"{where}: an override needs name = \"GLOB\" (a string)")
        if not isinstance(site, str) or (probe is not None and not isinstance(probe, str)):
            raise ConfigError(f"{where}: override {name!r}: site and probe must be strings")
        ignore = table.get("ignore", False)
        if not isinstance(ignore, bool):
            raise ConfigError(f"{where}: override {name!r}: ignore must be true or false")
        expected = table.get("expected")
        tolerance = table.get("tolerance")
        return Override(
            name, site, probe,
            expected=None if expected is None else _range_from_toml(f"{where}: override {name!r}", expected),
            tolerance=None if tolerance is None else _number(f"{where}: override {name!r}: tolerance",
                                                             tolerance),
            ignore=ignore,
        )


def _parse_number(what: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not a number") from None


def _parse_range(what: str, text: str) -> tuple[float, float]:
    lo, sep, hi = text.partition("..")
    if not sep:
        value = _parse_number(what, text)
        return value, value
    return _parse_number(what, lo), _parse_number(what, hi)


def _number(what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{what} must be a number, got {value!r}")
    return float(value)


def _range_from_toml(what: str, value: Any) -> tuple[float, float]:
    if isinstance(value, list):
        if len(value) != 2:
            raise ConfigError(f"{what}: expected must be a slope or [low, high], got {value!r}")
        return _number(f"{what}: expected", value[0]), _number(f"{what}: expected", value[1])
    number = _number(f"{what}: expected", value)
    return number, number


@dataclass(frozen=True)
class Config:
    """``[tool.coordscope]`` of one pyproject.toml (or nothing: every field None, no overrides).

    ``run`` holds the recording settings of a coordinate check and ``sweep`` (``[tool.coordscope.sweep]``)
    those of an LR sweep, both resolved by :mod:`coordscope.settings`; ``tolerance``, ``sigma`` and
    ``probe`` tune judgement; ``overrides`` apply in file order, before the CLI's.
    """

    path: Path | None = None
    run: Mapping[str, Any] = field(default_factory=dict)
    sweep: Mapping[str, Any] = field(default_factory=dict)
    tolerance: float | None = None
    sigma: float | None = None
    probe: str | None = None
    overrides: tuple[Override, ...] = ()


ConfigSource = Config | str | os.PathLike[str] | None
"""Where ``[tool.coordscope]`` comes from: a parsed :class:`Config`, a pyproject.toml path, or None for the
nearest pyproject.toml at or above the working directory."""


def find_pyproject(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The nearest pyproject.toml at or above ``start`` (default: the working directory)."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _toml_loads(text: str, path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised only on Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise ConfigError(f"{path}: reading [tool.coordscope] on Python 3.10 needs tomli "
                              "(pip install tomli)") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_TYPES: dict[str, Any] = {
    "widths": lambda v: isinstance(v, list) and all(map(_is_int, v)),
    "depths": lambda v: isinstance(v, list) and all(map(_is_int, v)),
    "dim": lambda v: isinstance(v, str),
    "steps": _is_int,
    "seeds": lambda v: _is_int(v) or (isinstance(v, list) and all(map(_is_int, v))),
    "lr": _is_number,
    "lrs": lambda v: isinstance(v, list) and all(map(_is_number, v)),
    "probes": lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)),
    "device": lambda v: isinstance(v, str),
    "dtype": lambda v: isinstance(v, str),
    "executor": lambda v: isinstance(v, str),
    "workers": _is_int,
    "exact": lambda v: isinstance(v, bool),
    "metric": lambda v: isinstance(v, str),
    "tolerance": _is_number,
    "proxy_width": lambda v: _is_int(v) and v > 0,
    "fail_above_proxy": lambda v: isinstance(v, bool),
}


def _settings_table(where: str, table: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The recording settings of a table, type-checked only: whether the values make sense is
    :mod:`coordscope.settings`' job (the same words as for flags)."""
    for key in keys:
        if key in table and not _TYPES[key](table[key]):
            raise ConfigError(f"{where}: {key} = {table[key]!r} has the wrong type")
    return {k: table[k] for k in keys if k in table}


def parse_config(table: Mapping[str, Any], path: Path | None = None) -> Config:
    """A :class:`Config` from the contents of ``[tool.coordscope]``."""
    where = f"{path or 'pyproject.toml'} [tool.coordscope]"
    unknown = sorted(set(table) - set(RUN_KEYS) - set(CHECK_KEYS) - {"sweep"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(RUN_KEYS + CHECK_KEYS)}, sweep)")
    sweep = table.get("sweep", {})
    if not isinstance(sweep, Mapping):
        raise ConfigError(f"{where}: sweep must be a table ([tool.coordscope.sweep])")
    unknown = sorted(set(sweep) - set(SWEEP_KEYS))
    if unknown:
        raise ConfigError(f"{where}.sweep: unknown key {unknown[0]!r} (known: {', '.join(SWEEP_KEYS)})")
    probe = table.get("probe")
    if probe is not None and not isinstance(probe, str):
        raise ConfigError(f"{where}: probe must be a probe name, got {probe!r}")
    raw_overrides = table.get("override", [])
    if not isinstance(raw_overrides, list):
        raise ConfigError(f"{where}: override must be an array of tables ([[tool.coordscope.override]])")
    return Config(
        path=path,
        run=_settings_table(where, table, RUN_KEYS),
        sweep=_settings_table(f"{where}.sweep", sweep, SWEEP_KEYS),
        tolerance=None if "tolerance" not in table else _non_negative(where, "tolerance", table["tolerance"]),
        sigma=None if "sigma" not in table else _non_negative(where, "sigma", table["sigma"]),
        probe=probe,
        overrides=tuple(Override.from_table(t, where) for t in raw_overrides),
    )


def _non_negative(where: str, key: str, value: Any) -> float:
    number = _number(f"{where}: {key}", value)
    if not (math.isfinite(number) and number >= 0):
        raise ConfigError(f"{where}: {key} must be a non-negative number, got {value!r}")
    return number


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """``[tool.coordscope]`` of ``path``, or of the nearest pyproject.toml above the working directory.

    No pyproject.toml, or one without the table, gives an empty :class:`Config`.
    """
    found = Path(path) if path is not None else find_pyproject()
    if found is None:
        return Config()
    if not found.is_file():
        raise ConfigError(f"config file {str(found)!r} does not exist")
    data = _toml_loads(found.read_text(encoding="utf-8"), found)
    table = data.get("tool", {}).get("coordscope") if isinstance(data.get("tool"), dict) else None
    if table is None:
        return Config(path=found)
    if not isinstance(table, dict):
        raise ConfigError(f"{found}: [tool.coordscope] must be a table")
    return parse_config(table, found)


def parse_overrides(items: Iterable[Override | str]) -> tuple[Override, ...]:
    """Overrides given as :class:`Override` objects or in the CLI form (see :meth:`Override.parse`)."""
    return tuple(item if isinstance(item, Override) else Override.parse(item) for item in items)
