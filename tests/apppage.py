"""Open the real Streamlit app under ``AppTest`` on one page of a folder of runs, shared by the tests that
drive the dashboard from outside ``tests/test_app.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import coordscope.app
from coordscope.app.data import ROOT_ENV


def open_page(monkeypatch: pytest.MonkeyPatch, root: Path, run: str, page: str) -> AppTest:
    """The app over the runs under ``root``, on ``views/{page}.py`` with ``run`` chosen; no exception raised."""
    monkeypatch.setenv(ROOT_ENV, str(root))
    at = AppTest.from_file(str(Path(coordscope.app.__file__).parent / "main.py"), default_timeout=120)
    at.query_params["run"] = run
    at.run()
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at
