"""pytest support: ``assert_mup(spec)`` fails a test with the check's table when a model is not μP.

::

    from coordscope.testing import assert_mup

    def test_my_model_is_mup(tmp_path):
        assert_mup("my_project/mup_spec.py", widths=[64, 128, 256, 512], steps=5, out=tmp_path / "run")
"""

from __future__ import annotations

from typing import Any

from coordscope.checking import Target, check
from coordscope.report import Report


def assert_mup(spec: Target, **kwargs: Any) -> Report:
    """Run :func:`coordscope.check` on ``spec`` (a spec or a run directory; keyword arguments as for
    ``check``) and raise ``AssertionError`` whose message is the text table — findings, diagnoses and
    hints — if any judged layer violates μP. Returns the :class:`Report` when the model passes."""
    kwargs.setdefault("progress", False)
    report = check(spec, **kwargs)
    if not report.ok:
        raise AssertionError("the model does not scale as μP predicts\n" + report.render("text"))
    return report
