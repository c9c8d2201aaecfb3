"""coordscope: coordinate checks for μP.

Record how every activation, gradient and update of a PyTorch model scales with width (:func:`run`, or
:func:`recording` around your own training loop), read the records (:func:`load`), judge them (:func:`check`
→ :class:`Report`; :func:`coordscope.testing.assert_mup` in pytest), run μTransfer learning-rate sweeps
(:func:`sweep`, :func:`analyse_sweep`), and write your own statistics (:func:`register_probe`). Expose an
intermediate tensor with :func:`tap`.

The names are loaded on first use (PEP 562), so ``import coordscope`` — and the ``coordscope`` command's
``--help`` — costs nothing until a name that needs torch is touched.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

# app/, probes/ and sample_models/ install as coordscope.app, coordscope.probes and coordscope.sample_models.
# In a source checkout they sit beside this folder, and the editable install links them into a tree of its
# own (build/__editable__.*/coordscope); when the checkout itself comes first on sys.path (`python -m pytest`
# from its root), this adds that tree to the package's path so they import all the same.
__path__ = pkgutil.extend_path(__path__, __name__)

__version__ = version("coordscope")

# public name → the module that defines it
_EXPORTS: dict[str, str] = {
    "ConfigError": "coordscope.errors",
    "CoordscopeError": "coordscope.errors",
    "ProbeError": "coordscope.errors",
    "SpecError": "coordscope.errors",
    "StoreError": "coordscope.errors",
    "Override": "coordscope.config",
    "ProbeContext": "coordscope.probe",
    "register_probe": "coordscope.probe",
    "Report": "coordscope.report",
    "RunMeta": "coordscope.runmeta",
    "read_meta": "coordscope.runmeta",
    "Spec": "coordscope.spec",
    "load_spec": "coordscope.spec",
    "load": "coordscope.store",
    "scan": "coordscope.store",
    "run": "coordscope.coordcheck",
    "check": "coordscope.checking",
    "sweep": "coordscope.lrsweep",
    "SweepReport": "coordscope.transfer",
    "analyse_sweep": "coordscope.transfer",
    "tap": "coordscope.taps",
    "recording": "coordscope.ownloop",
    "Recording": "coordscope.ownloop",
}
__all__ = sorted([*_EXPORTS, "testing"])


def __getattr__(name: str) -> Any:
    if name == "testing":
        return importlib.import_module("coordscope.testing")
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'coordscope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:
    from coordscope import testing as testing
    from coordscope.checking import check as check
    from coordscope.config import Override as Override
    from coordscope.coordcheck import run as run
    from coordscope.errors import ConfigError as ConfigError
    from coordscope.errors import CoordscopeError as CoordscopeError
    from coordscope.errors import ProbeError as ProbeError
    from coordscope.errors import SpecError as SpecError
    from coordscope.errors import StoreError as StoreError
    from coordscope.lrsweep import sweep as sweep
    from coordscope.ownloop import Recording as Recording
    from coordscope.ownloop import recording as recording
    from coordscope.probe import ProbeContext as ProbeContext
    from coordscope.probe import register_probe as register_probe
    from coordscope.report import Report as Report
    from coordscope.runmeta import RunMeta as RunMeta
    from coordscope.runmeta import read_meta as read_meta
    from coordscope.spec import Spec as Spec
    from coordscope.spec import load_spec as load_spec
    from coordscope.store import load as load
    from coordscope.store import scan as scan
    from coordscope.taps import tap as tap
    from coordscope.transfer import SweepReport as SweepReport
    from coordscope.transfer import analyse_sweep as analyse_sweep
