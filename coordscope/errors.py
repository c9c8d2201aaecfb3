"""The exceptions coordscope raises on bad input.

Every problem a user can fix (a wrong spec, a damaged store, a bad flag) is a :class:`CoordscopeError`
whose message is one line naming what is wrong. The CLI turns these into exit code 2 without a
traceback; anything else is a bug in coordscope and keeps its traceback.
"""

from __future__ import annotations


class CoordscopeError(ValueError):
    """Base class: a one-line, user-fixable problem (the CLI exits 2 with this message)."""


class SpecError(CoordscopeError):
    """The spec cannot be loaded, lacks `model`/`batches`, or `model(width)` failed."""


class StoreError(CoordscopeError):
    """A run directory is missing, incomplete, damaged or written by a newer schema."""


class ConfigError(CoordscopeError):
    """A setting (flag, `[tool.coordscope]` entry, override) is invalid."""


class ProbeError(CoordscopeError):
    """A probe name cannot be resolved, or a probe returned something that is not a scalar."""
