"""coordscope: coordinate checks for μP.

Record how every activation, gradient and update of a PyTorch model scales with width (:func:`run`), read
the records (:func:`load`), judge them (:func:`check` → :class:`Report`; :func:`coordscope.testing.assert_mup`
in pytest), run μTransfer learning-rate sweeps (:func:`sweep`, :func:`analyse_sweep`), and write your own
statistics (:func:`register_probe`). Expose an intermediate tensor with
:func:`tap`.
"""

from coordscope import testing
from coordscope.checking import check
from coordscope.config import Override
from coordscope.errors import ConfigError, CoordscopeError, ProbeError, SpecError, StoreError
from coordscope.lrsweep import SweepReport, analyse_sweep, sweep
from coordscope.probe import ProbeContext, register_probe
from coordscope.report import Report
from coordscope.run import run
from coordscope.spec import Spec, load_spec
from coordscope.store import load, read_meta, scan
from coordscope.taps import tap

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "CoordscopeError",
    "ProbeContext",
    "Override",
    "ProbeError",
    "Report",
    "Spec",
    "SweepReport",
    "SpecError",
    "StoreError",
    "analyse_sweep",
    "check",
    "load",
    "load_spec",
    "read_meta",
    "register_probe",
    "run",
    "scan",
    "sweep",
    "tap",
    "testing",
]
