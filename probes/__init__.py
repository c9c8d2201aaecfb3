"""The built-in probes, written only against the public probe API (so they double as its examples)."""

from . import builtin as builtin  # noqa: F401  (registers rms, l1, absmax)
