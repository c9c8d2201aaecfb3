"""The worked example of docs/worked-example.md: the plain model fails for the documented reasons, both μP
versions pass, with the same number of judged layer sites as the page shows."""

from __future__ import annotations

from pathlib import Path

import pytest

import coordscope

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "example"
GRID = {"seeds": 2, "progress": False}


def test_the_plain_model_fails_naming_the_readout_and_the_hidden_lr(tmp_path: Path) -> None:
    report = coordscope.check(str(EXAMPLE / "plain.py"), out=tmp_path / "r", **GRID)
    assert not report.ok and report.regime == "SP-like (exploding)"
    assert {d.rule for d in report.diagnoses} == {"readout_unscaled", "plain_adam"}
    assert [(n.role, n.key) for n in report.notes] == [("hidden", "lr")]


@pytest.mark.parametrize(("example", "judged"), [("mup_by_hand.py", 9), ("mup_package.py", 11)])
def test_the_mup_versions_pass(tmp_path: Path, example: str, judged: int) -> None:
    pytest.importorskip("mup")
    report = coordscope.check(str(EXAMPLE / example), out=tmp_path / "r", **GRID)
    assert report.ok, report.render("text")
    assert report.headline.startswith(f"PASS: {judged} judged layer sites") and not report.notes
