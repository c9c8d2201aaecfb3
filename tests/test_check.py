"""``coordscope check`` end to end on the MLP samples: real torch runs, real Parquet, the real CLI.

μP must pass whatever the seeds; SP with Adam must fail naming the readout and the hidden layers with the
fixes; NTK with SGD must be flagged lazy. Every format parses; every bad input exits 2 with one line.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

import coordscope.checking as api
from coordscope.cli import main
from coordscope.runmeta import read_meta, write_meta
from coordscope.testing import assert_mup

GRID = {"widths": [64, 128, 256, 512], "steps": 5}


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("seeds", [[3, 4, 5], [6, 7, 8], [9, 10, 11], [12, 13, 14]])
def test_mup_passes_for_other_seed_sets(tmp_path, seeds):
    """With the session's seeds 0, 1, 2 (next test) that is five different seed sets."""
    report = api.check("mlp-mup", seeds=seeds, out=tmp_path / "run", progress=False, **GRID)
    assert report.ok and report.complete, report.render("text")
    assert report.findings == [] and report.regime == "μP-like"
    assert list(read_meta(report.run_dir).seeds) == seeds


def test_mup_passes_on_the_recorded_run(mlp_runs):
    code, out, err = cli("check", mlp_runs["mlp-mup"])
    assert code == 0, out + err
    assert "PASS" in out and "μP-like" in out


def test_sp_with_adam_fails_naming_readout_and_hidden_layers(mlp_runs):
    report = api.check(mlp_runs["mlp-sp"])
    assert not report.ok and report.regime == "SP-like (exploding)"
    rules = {d.rule: set(d.layers) for d in report.diagnoses}
    assert {"readout", "<output>"} <= rules["readout_unscaled"]
    assert {"hidden.0", "hidden.1"} <= rules["plain_adam"]
    readout = next(f for f in report.errors if f.name == "readout" and f.site == "act_delta")
    assert readout.verdict == "exploding" and readout.slope > 0.7 and "1/width" in readout.hint
    hidden = next(f for f in report.errors if f.name == "hidden.0" and f.site == "act_delta")
    assert hidden.verdict == "exploding" and "learning rate" in hidden.hint and "MuAdam" in hidden.hint
    assert not any(f.name == "input" for f in report.errors)


def test_ntk_with_sgd_is_flagged_lazy_in_the_hidden_layers(mlp_runs):
    report = api.check(mlp_runs["mlp-ntk"])
    assert not report.ok and report.regime == "NTK-like (lazy)"
    lazy = {f.name for f in report.errors if f.site == "act_delta" and f.verdict == "vanishing"}
    assert {"hidden.0", "hidden.1"} <= lazy
    assert [d.rule for d in report.diagnoses] == ["ntk_lazy"]
    assert all(f.slope < -0.3 for f in report.errors)


def test_exit_codes_and_text_table(mlp_runs):
    code, out, _ = cli("check", mlp_runs["mlp-sp"])
    assert code == 1
    assert out.splitlines()[1].startswith("FAIL:")
    assert "[readout_unscaled]" in out and "[plain_adam]" in out
    row = next(line for line in out.splitlines() if " readout " in line and "act_delta" in line)
    assert row.split()[0] == "FAIL" and "exploding" in row


def test_json_has_the_contract_keys(mlp_runs, tmp_path):
    target = tmp_path / "report.json"
    code, _, err = cli("check", mlp_runs["mlp-sp"], "--format", "json", "--output", str(target))
    assert code == 1 and str(target) in err
    data = json.loads(target.read_text())
    assert data["ok"] is False and data["complete"] is True and data["regime"] == "SP-like (exploding)"
    for finding in data["findings"]:
        assert {"name", "site", "probe", "step", "slope", "stderr", "expected", "verdict", "severity",
                "hint"} <= set(finding)
        assert finding["verdict"] in ("flat", "exploding", "vanishing", "diverged")
    assert any(f["severity"] == "error" for f in data["findings"])
    code, out, _ = cli("check", mlp_runs["mlp-mup"], "--format", "json")
    assert code == 0 and json.loads(out)["ok"] is True and json.loads(out)["findings"] == []


def test_json_has_a_verdict_per_judged_layer_and_step(mlp_runs):
    code, out, _ = cli("check", mlp_runs["mlp-sp"], "--format", "json")
    data = json.loads(out)
    per_step = {(r["name"], r["site"], r["step"]): r for r in data["per_step"]}
    hidden = [per_step[("hidden.1", "act_delta", t)] for t in range(1, 6)]  # steps 1..5; t = 0 has no delta
    assert all(r["verdict"] == "exploding" and r["severity"] == "error" for r in hidden[:3])
    assert hidden[0]["slope"] > hidden[-1]["slope"]  # SP's first step is the worst; later steps show it easing
    assert ("hidden.1", "act_delta", 0) not in per_step
    worst = next(f for f in data["findings"] if (f["name"], f["site"]) == ("hidden.1", "act_delta"))
    assert per_step[("hidden.1", "act_delta", worst["step"])]["slope"] == worst["slope"]


def test_junit_has_one_test_case_per_judged_layer(mlp_runs):
    code, out, _ = cli("check", mlp_runs["mlp-sp"], "--format", "junit")
    assert code == 1
    suite = ET.fromstring(out.split("\n", 1)[1]).find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    report = api.check(mlp_runs["mlp-sp"])
    assert len(cases) == len(report.judged) == int(suite.get("tests", "-1"))
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == {f"{f.name} · {f.site} [{f.probe}]" for f in report.errors}
    assert int(suite.get("failures", "-1")) == len(failed)
    failure = next(c for c in cases if c.get("name") == "readout · act_delta [rms]").find("failure")
    assert failure is not None and "exploding" in failure.get("message", "") and "1/width" in (failure.text or "")


def test_markdown_is_a_step_summary(mlp_runs):
    code, out, _ = cli("check", mlp_runs["mlp-sp"], "--format", "markdown")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("### ❌ coordscope check: FAIL")
    header = next(i for i, line in enumerate(lines) if "| layer |" in line)
    assert lines[header + 1].startswith("|---|") and "cause" in lines[header]
    assert any("`readout`" in line and "exploding" in line and "`readout_unscaled`" in line
               for line in lines[header + 2:])
    assert "`<output>`" in out
    assert "**Diagnosis**" in out and "`plain_adam`" in out
    code, out, _ = cli("check", mlp_runs["mlp-mup"], "--format", "markdown")
    assert code == 0 and out.startswith("### ✅")


def test_check_a_spec_records_it_first(tmp_path):
    out = tmp_path / "run"
    code, stdout, stderr = cli("check", "mlp-sp", "--widths", "64,256", "--steps", "2", "--seeds", "2",
                               "--out", str(out))
    assert code == 1, stdout + stderr
    assert read_meta(out).widths == (64, 256) and "readout" in stdout


def test_assert_mup_passes_quietly_and_fails_with_the_table(mlp_runs):
    assert assert_mup(mlp_runs["mlp-mup"]).ok
    with pytest.raises(AssertionError) as failure:
        assert_mup(mlp_runs["mlp-sp"])
    message = str(failure.value)
    assert "FAIL:" in message and "readout_unscaled" in message and "hidden.0" in message


def test_overrides_from_the_command_line(mlp_runs):
    code, out, _ = cli("check", mlp_runs["mlp-ntk"], "--override", "hidden.*:act_delta:expected=-0.75..-0.25",
                       "--override", "input:act_delta:ignore")
    assert code == 1 and "hidden.0.weight  param_update [rel_rms]" in out  # the lazy weights' updates still fail
    code, out, _ = cli("check", mlp_runs["mlp-ntk"], "--override", "hidden.*:act_delta:expected=-0.75..-0.25",
                       "--override", "input:act_delta:ignore", "--override", "hidden.*:param_update:ignore")
    assert code == 0, out


def _copy(run: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "copy"))


def _one_width(run: str, tmp_path: Path) -> str:
    copy = _copy(run, tmp_path)
    meta = read_meta(copy)
    for job in meta.jobs:
        if job.width != 64:
            (copy / job.shard).unlink()
    write_meta(copy, replace(meta, widths=(64,), jobs=tuple(j for j in meta.jobs if j.width == 64)))
    return str(copy)


def _incomplete(run: str, tmp_path: Path) -> str:
    copy = _copy(run, tmp_path)
    (copy / read_meta(copy).jobs[-1].shard).unlink()
    return str(copy)


BAD = {
    "missing run directory": (lambda runs, tmp: ["check", str(tmp / "runs" / "nope")], "run directory"),
    "neither a run nor a spec": (lambda runs, tmp: ["check", "no_such_thing"], "neither a run directory nor a spec"),
    "a run with one width": (lambda runs, tmp: ["check", _one_width(runs["mlp-mup"], tmp)], "at least two widths"),
    "an incomplete run": (lambda runs, tmp: ["check", _incomplete(runs["mlp-mup"], tmp)], "--allow-incomplete"),
    "override with an unknown site": (lambda runs, tmp: ["check", runs["mlp-mup"], "--override", "*:acts:ignore"],
                                      "unknown site 'acts'"),
    "override with an unknown probe": (lambda runs, tmp: ["check", runs["mlp-mup"], "--override",
                                                          "*:act:probe=median,ignore"], "probe 'median' was not recorded"),
    "override without an action": (lambda runs, tmp: ["check", runs["mlp-mup"], "--override", "*:act:"],
                                   "expected PATTERN:SITE:key=value"),
    "override with a bad key": (lambda runs, tmp: ["check", runs["mlp-mup"], "--override", "*:act:tolerance=x"],
                                "'x' is not a number"),
    "unknown judged probe": (lambda runs, tmp: ["check", runs["mlp-mup"], "--probe", "l1"],
                             "probe 'l1' was not recorded"),
    "run flags with a run directory": (lambda runs, tmp: ["check", runs["mlp-mup"], "--widths", "8,16"],
                                       "only apply when TARGET is a spec"),
    "unknown format": (lambda runs, tmp: ["check", runs["mlp-mup"], "--format", "html"], "Invalid value for '--format'"),
    "unwritable output": (lambda runs, tmp: ["check", runs["mlp-mup"], "--output", str(tmp / "no" / "dir" / "r.txt")],
                          "cannot write"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exits_2_with_one_line(mlp_runs, tmp_path, case):
    make_args, message = BAD[case]
    code, out, err = cli(*make_args(mlp_runs, tmp_path))
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("coordscope: error: ") and message in lines[0], err
    assert "Traceback" not in out + err


def test_allow_incomplete_judges_what_is_there(mlp_runs, tmp_path):
    code, out, _ = cli("check", _incomplete(mlp_runs["mlp-mup"], tmp_path), "--allow-incomplete", "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["complete"] is False and data["ok"] is True


def test_a_spec_checked_without_out_leaves_no_run_behind(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where mkdtemp makes its directories
    report = api.check("mlp-mup", widths=[64, 128, 256], steps=2, seeds=2, progress=False)
    assert report.temporary and report.ok and not list(tmp_path.glob("coordscope-check-*"))
    assert "now removed" in report.render("text") and report.to_dict()["run_dir"] is None
    with pytest.raises(AssertionError):
        assert_mup("mlp-sp", widths=[64, 128], steps=2, seeds=1)
    assert not list(tmp_path.glob("coordscope-check-*"))  # also when the check fails
    with pytest.raises(api.ConfigError):
        api.check("mlp-mup", widths=[64, 128], steps=1, seeds=1, lr=-1.0)
    assert not list(tmp_path.glob("coordscope-check-*"))  # and when it cannot even start


def test_failures_only_lists_only_failing_layers_and_keeps_the_count(mlp_runs):
    code, full, _ = cli("check", mlp_runs["mlp-sp"])
    code_f, short, _ = cli("check", mlp_runs["mlp-sp"], "--failures-only")
    assert code == code_f == 1
    assert full.splitlines()[1] == short.splitlines()[1]  # the same headline, counting every judged layer
    assert "  ok  " in full and "  ok  " not in short
    assert sum(line.startswith("  FAIL") for line in full.splitlines()) == sum(
        line.startswith("  FAIL") for line in short.splitlines()) > 0
    data = json.loads(cli("check", mlp_runs["mlp-sp"], "--failures-only", "--format", "json")[1])
    assert data["layers"] and all(r["severity"] in ("error", "warning") for r in data["layers"])


def test_a_loss_that_blows_up_while_finite_is_named(tmp_path):
    report = api.check("mlp-mup", widths=[64, 128], steps=2, seeds=1, lr=3.0, out=tmp_path / "r", progress=False)
    (loss,) = [f for f in report.findings if f.site == "loss"]
    assert loss.verdict == "diverged" and loss.rule == "loss_blowup" and "the loss grew ×" in loss.hint
    assert "loss_blowup" in {d.rule for d in report.diagnoses}


def test_gpt2_style_sp_lists_both_causes_with_the_linear_layers(tmp_path):
    """GPT-2's SP has a constant init std *and* an unscaled hidden lr: both diagnoses name its matrices."""
    report = api.check("gpt-sp-gpt2-init", widths=[64, 128, 256], steps=3, seeds=2, out=tmp_path / "r",
                       progress=False)
    by_rule = {d.rule: set(d.layers) for d in report.diagnoses}
    assert "blocks.0.mlp.c_fc" in by_rule["sp_init_constant_std"]
    assert {"blocks.0.mlp.c_fc", "blocks.0.attn.c_attn"} <= by_rule["plain_adam"]
