"""Dogfood: ``coordscope check`` on every sample, through the CLI, against the verdict each sample should get.

Every μP sample must pass (exit 0); every planted bug and non-μP parametrization must fail (exit 1) with a
finding on its culprit layer, and where the sample names a bug, that diagnosis rule must be what the
culprit's finding says. Each sample is checked with five disjoint seed sets, so a verdict that holds
for one lucky seed does not pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from coordscope.cli import main
from coordscope.depth import DEPTH_RULE_IDS
from coordscope.diagnose import RULE_IDS
from coordscope.sample_models import SAMPLES

SEED_SETS = ("0,1", "2,3", "4,5", "6,7", "8,9")  # five disjoint seed sets
WIDTHS = "64,128,256,512"
STEPS = "4"


def run_check(sample: str, seeds: str, out: Path) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["check", sample, "--widths", WIDTHS, "--steps", STEPS, "--seeds", seeds,
                                       "--out", str(out), "--format", "json"])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("seeds", SEED_SETS)
@pytest.mark.parametrize("sample", [n for n, s in SAMPLES.items() if s.expect == "pass" and s.axis == "width"])
def test_mup_sample_passes(sample: str, seeds: str, tmp_path: Path) -> None:
    code, report = run_check(sample, seeds, tmp_path / "run")
    errors = [f"{f['name']}/{f['site']} t={f['step']} slope={f['slope']}" for f in report["findings"]
              if f["severity"] == "error"]
    assert code == 0 and report["ok"], f"{sample} (seeds {seeds}) should pass μP, got errors: {errors}"


@pytest.mark.slow
@pytest.mark.parametrize("seeds", SEED_SETS)
@pytest.mark.parametrize("sample", [n for n, s in SAMPLES.items() if s.expect == "fail" and s.axis == "width"])
def test_planted_bug_fails_and_is_named(sample: str, seeds: str, tmp_path: Path) -> None:
    expected = SAMPLES[sample]
    code, report = run_check(sample, seeds, tmp_path / "run")
    assert code == 1 and not report["ok"], f"{sample} (seeds {seeds}) should fail"
    on_culprit = [f for f in report["findings"] if expected.culprit in f["name"] and f["severity"] == "error"]
    assert on_culprit, (f"{sample}: no error names the culprit {expected.culprit!r}; findings on "
                        f"{sorted({f['name'] for f in report['findings']})}")
    if expected.bug:
        rules = {f["rule"] for f in on_culprit}
        assert expected.bug in rules, f"{sample}: culprit findings blame {rules}, not {expected.bug!r}"
        fired = {d["rule"] for d in report["diagnoses"]}
        assert expected.bug in fired


def test_every_planted_bug_names_a_known_rule_and_a_culprit() -> None:
    for name, sample in SAMPLES.items():
        assert sample.expect in ("pass", "fail"), name
        if sample.expect == "fail":
            assert sample.culprit, f"{name} has no culprit"
        if sample.bug:
            assert sample.bug in RULE_IDS + DEPTH_RULE_IDS, f"{name}: unknown rule {sample.bug!r}"


def test_attention_bug_is_caught_through_the_attention_logits(tmp_path: Path) -> None:
    """1/√d attention under μP changes nothing but the logits' scale: only the SDPA tap can see it, and
    the correct μP GPT, with the same tap, raises no finding at all."""
    _, bug = run_check("gpt-bug-attn-sqrt-d", "0,1", tmp_path / "bug")
    blamed = {f["name"] for f in bug["findings"] if f["rule"] == "attn_sqrt_d"}
    assert blamed and all(name.endswith(".attn.attn_logits") for name in blamed)
    assert all(f["name"].endswith("attn_logits") for f in bug["findings"]), "only the logits should move"
    code, good = run_check("gpt-mup", "0,1", tmp_path / "good")
    assert code == 0 and good["findings"] == []
    judged = {layer["name"] for layer in good["layers"]}
    assert {"blocks.0.attn.attn_logits", "blocks.1.attn.attn_logits"} <= judged
