"""One judgement: the same run gets the same verdict from `coordscope check`, the HTML report, the
dashboard and `coordscope.check`, all reading [tool.coordscope] from the nearest pyproject.toml."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from streamlit.testing.v1 import AppTest

import coordscope
import coordscope.app
from coordscope.app.data import ROOT_ENV
from coordscope.cli import main

MAIN = str(Path(coordscope.app.__file__).parent / "main.py")
# Widen the tolerance of every activation fit: the SP MLP's growing curves (slopes up to about +1.5) pass.
LENIENT = """
[tool.coordscope]

[[tool.coordscope.override]]
name = "*"
site = "*"
tolerance = 2.5
"""


def _verdicts(run: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """PASS (True) or FAIL (False) from each surface, each run from ``workdir`` as a user would."""
    monkeypatch.chdir(workdir)
    runner = CliRunner()
    check = runner.invoke(main, ["check", str(run)])
    assert check.exit_code in (0, 1), check.output
    html = workdir / "report.html"
    written = runner.invoke(main, ["report", str(run), "--out", str(html)])
    assert written.exit_code == 0, written.output
    page = html.read_text()
    assert ("banner pass" in page) != ("banner fail" in page)
    monkeypatch.setenv(ROOT_ENV, str(run.parent))
    app = AppTest.from_file(MAIN, default_timeout=120)
    app.query_params["run"] = run.name
    app.run()
    assert not app.exception, [e.message for e in app.exception]
    banners = [("PASS" in s.value, s.value) for s in app.success] + [(False, e.value) for e in app.error
                                                                        if "FAIL" in e.value]
    assert len(banners) == 1, banners
    return {"check": check.exit_code == 0, "report": "banner pass" in page, "dashboard": banners[0][0],
            "api": coordscope.check(run).ok}


def test_a_pyproject_override_turns_fail_into_pass_on_every_surface(mlp_runs, tmp_path, monkeypatch) -> None:
    run = Path(shutil.copytree(mlp_runs["mlp-sp"], tmp_path / "runs" / "mlp-sp"))
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert _verdicts(run, plain, monkeypatch) == dict.fromkeys(("check", "report", "dashboard", "api"), False)
    lenient = tmp_path / "lenient"
    lenient.mkdir()
    (lenient / "pyproject.toml").write_text(LENIENT)
    assert _verdicts(run, lenient, monkeypatch) == dict.fromkeys(("check", "report", "dashboard", "api"), True)
