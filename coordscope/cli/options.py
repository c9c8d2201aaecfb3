"""Parsing of the flags several commands share (widths, seeds, learning rates, probes, output).

Parsers turn text into values and raise :class:`ConfigError` naming the flag; whether a value makes
sense (sorted widths, positive lr, …) is checked once, in :mod:`coordscope.settings`, so the Python API and
the CLI refuse the same inputs with the same words.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import click

from coordscope.choices import DTYPES, EXECUTORS
from coordscope.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


def parse_int_list(flag: str, text: str) -> list[int]:
    """``"64,128,256"`` → ``[64, 128, 256]``."""
    out = []
    for part in text.split(","):
        part = part.strip()
        try:
            out.append(int(part))
        except ValueError:
            raise ConfigError(f"{flag}: {part!r} is not an integer (expected e.g. 64,128,256)") from None
    return out


def parse_seeds(text: str) -> int | list[int]:
    """``"3"`` → 3 seeds (0, 1, 2); ``"0,5,7"`` → exactly those seeds."""
    values = parse_int_list("--seeds", text)
    return values[0] if len(values) == 1 and "," not in text else values


def parse_float(flag: str, text: str) -> float:
    """A float, also written as a power of two (``2^-8``)."""
    text = text.strip()
    try:
        if text.startswith("2^"):
            return float(2.0 ** float(text[2:]))
        return float(text)
    except (ValueError, OverflowError):
        raise ConfigError(f"{flag}: {text!r} is not a number (e.g. 0.01 or 2^-7)") from None


def parse_log2_grid(flag: str, text: str) -> list[float]:
    """Learning rates: ``2^-14:2^-4:0.5`` (log2 start, stop, step in log2 units) or a comma list."""
    if ":" not in text:
        return [parse_float(flag, part) for part in text.split(",")]
    parts = text.split(":")
    if len(parts) != 3:
        raise ConfigError(f"{flag}: {text!r} is not START:STOP:STEP (e.g. 2^-14:2^-4:0.5)")
    start, stop = (parse_float(flag, p) for p in parts[:2])
    step = parse_float(flag, parts[2])
    if not (start > 0 and stop > 0 and step > 0) or not all(map(math.isfinite, (start, stop, step))):
        raise ConfigError(f"{flag}: {text!r}: start and stop must be positive and the log2 step positive")
    lo, hi = math.log2(start), math.log2(stop)
    if hi < lo:
        raise ConfigError(f"{flag}: {text!r}: stop is below start")
    count = int(math.floor((hi - lo) / step + 1e-9)) + 1
    return [float(2.0 ** (lo + i * step)) for i in range(count)]


def _parsed(parser: Callable[[str], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        return None if value is None else parser(value)

    return callback


def run_options(fn: F) -> F:
    """The flags of ``coordscope run`` (also taken by ``check SPEC``). Unset flags arrive as None so that
    ``[tool.coordscope]`` and the spec's ``DEFAULTS`` can fill them."""
    options = [
        click.option("--widths", callback=_parsed(lambda t: parse_int_list("--widths", t)),
                     help="Comma-separated widths, increasing (default: the spec's, else 64,128,256,512; "
                     "one width is enough with --depths, default 128 there)."),
        click.option("--depths", callback=_parsed(lambda t: parse_int_list("--depths", t)),
                     help="Comma-separated depths, increasing: sweep depth too, calling the spec's "
                     "model(width, depth) (default: the spec's DEFAULTS['depths'], else no depth sweep)."),
        click.option("--dim", help="Sweep one dimension the spec declares in DIMENSIONS on its own, at one width: "
                     "NAME (its declared values) or NAME=V1,V2,... (e.g. d_ff=64,128,256,512); calls "
                     "model(width, NAME=V) and fits against NAME (docs/dimensions.md)."),
        click.option("--steps", type=int, help="Optimizer steps per job; steps 0..N are recorded (default 5)."),
        click.option("--seeds", callback=_parsed(parse_seeds),
                     help="A count N (seeds 0..N-1) or a comma list of seeds (default 3)."),
        click.option("--lr", callback=_parsed(lambda t: parse_float("--lr", t)),
                     help="Base learning rate handed to the spec's optimizer (default: the spec's, else 0.01)."),
        click.option("--probes", help="Comma-separated probes: built-in names (rms, l1, absmax, spectral), "
                     "file.py:function or module:function (default rms,spectral: spectral norms of weights and "
                     "of updates of hidden matrices up to 512 x 512)."),
        click.option("--out", type=click.Path(file_okay=True, dir_okay=True),
                     help="Run directory to create (default runs/<spec>-<time>)."),
        click.option("--overwrite", is_flag=True, help="Replace an existing non-empty run directory."),
        click.option("--resume", is_flag=True, help="Continue an interrupted run in --out: only missing jobs run."),
        click.option("--executor", type=click.Choice(EXECUTORS),
                     help="Where jobs run (default inline)."),
        click.option("--workers", type=int, help="Worker processes for --executor processes/ray."),
        click.option("--device", help="Torch device, e.g. cpu or cuda (default cpu)."),
        click.option("--dtype", type=click.Choice(DTYPES),
                     help="Parameter dtype (default float32)."),
        click.option("--exact", is_flag=True, default=None,
                     help="Measure updates and activation changes on every entry of big tensors (keeps whole "
                     "copies) instead of at fixed positions: every row of a parameter, about 16384 entries of "
                     "an activation (default off)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False),
    help="pyproject.toml to read [tool.coordscope] from (default: the nearest one above the working directory).")


def run_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """The set ``run_options`` flags as keyword arguments of :func:`coordscope.run`."""
    keys = ("widths", "depths", "dim", "steps", "seeds", "lr", "probes", "out", "overwrite", "resume", "executor",
            "workers", "device", "dtype", "exact")
    return {k: params[k] for k in keys if params.get(k) is not None and params.get(k) is not False}
