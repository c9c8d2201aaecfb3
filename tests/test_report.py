"""The result of a check (:mod:`coordscope.report`): the headline, the four renderings and the JSON contract, all
from real Reports of recorded runs — the MLP samples (μP passes, SP fails), an incomplete copy, and a tiny model
whose zero-initialised readout leaves hidden layers that one step cannot judge.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
import torch
from torch import nn

import coordscope
from coordscope.checking import check_run
from coordscope.choices import FORMATS
from coordscope.errors import ConfigError, StoreError
from coordscope.report import Report, write
from coordscope.sample_models.mlp import Readout
from coordscope.spec import Spec

CONTRACT_KEYS = {"name", "site", "probe", "step", "slope", "stderr", "expected", "verdict", "severity", "hint"}
MLP_LAYERS = ("input", "hidden.0", "hidden.1", "readout", "<output>")  # judged at act and act_delta each
HIDDEN_MATRICES = ("hidden.0.weight", "hidden.1.weight")  # their updates relative to them: rel_rms, rel_spectral
JUDGED_SITES = {*((n, s, "rms") for n in MLP_LAYERS for s in ("act", "act_delta")), ("<output>", "act_grad", "rms"),
                *((m, "param_update", p) for m in HIDDEN_MATRICES for p in ("rel_rms", "rel_spectral"))}
JUDGED = len(JUDGED_SITES)


@pytest.fixture(scope="module")
def runs(mlp_runs, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("report-runs")
    return {name: Path(shutil.copytree(mlp_runs[name], root / name)) for name in ("mlp-mup", "mlp-sp")}


@pytest.fixture(scope="module")
def mup(runs) -> Report:
    return check_run(runs["mlp-mup"])


@pytest.fixture(scope="module")
def sp(runs) -> Report:
    return check_run(runs["mlp-sp"])


class ZeroReadoutMLP(nn.Module):
    """μP-style MLP with a zero-initialised readout: at step 1 only the readout has moved."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.input, self.hidden = nn.Linear(16, width), nn.Linear(width, width)
        self.readout = Readout(width, 4, 32 / width)
        for layer in (self.input, self.hidden):
            nn.init.normal_(layer.weight, std=layer.in_features ** -0.5)
            nn.init.zeros_(layer.bias)
        nn.init.zeros_(self.readout.weight)
        nn.init.zeros_(self.readout.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(torch.relu(self.hidden(torch.relu(self.input(x)))))


def _batches():
    g = torch.Generator().manual_seed(0)
    while True:
        yield torch.randn(32, 16, generator=g), torch.randint(0, 4, (32,), generator=g)


def _mup_adam(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    assert isinstance(model, ZeroReadoutMLP)
    return torch.optim.Adam([{"params": model.hidden.parameters(), "lr": lr * 32 / model.hidden.in_features},
                             {"params": [*model.input.parameters(), *model.readout.parameters()]}], lr=lr)


@pytest.fixture(scope="module")
def unjudgeable(tmp_path_factory) -> Report:
    spec = Spec(model=ZeroReadoutMLP, batches=_batches, optimizer=_mup_adam, ref="zero-readout")
    out = tmp_path_factory.mktemp("zero-readout") / "run"
    return coordscope.check(spec, widths=[32, 64, 128], steps=1, seeds=2, out=out, progress=False)


def error_keys(report: Report) -> set[tuple[str, str, str]]:
    return {f.key for f in report.errors}


# --- headline ----------------------------------------------------------------------------------------------


def test_headline_of_a_passing_run(mup):
    judged = mup.judged.filter(pl.col("layer_judged")).height
    assert judged == JUDGED
    assert mup.ok and mup.complete and mup.errors == []
    assert mup.headline == f"PASS: {judged} judged layer sites scale as μP predicts · regime: μP-like"


def test_headline_of_a_failing_run_counts_distinct_violating_layer_sites(sp):
    assert not sp.ok
    violating = len(error_keys(sp))
    assert 4 <= violating <= JUDGED
    assert sp.headline == (f"FAIL: {violating} of {JUDGED} judged layer sites violate μP"
                           " · regime: SP-like (exploding)")


def test_headline_when_layers_could_not_be_judged(unjudgeable):
    report = unjudgeable
    assert not report.ok and report.regime == "undetermined"
    undetermined = {f.key for f in report.errors if f.verdict == "undetermined"}
    assert undetermined == error_keys(report) and {k[0] for k in undetermined} >= {"hidden"}
    judged = report.judged.filter(pl.col("layer_judged")).height
    assert report.headline == (f"FAIL: {len(undetermined)} of {judged} judged layer sites could not be judged "
                               "(see the hint) · regime: undetermined")


def test_headline_counts_violations_and_unjudged_separately(sp):
    extra = replace(sp.errors[0], name="hidden.9", verdict="undetermined", slope=None, rule="undetermined")
    mixed = replace(sp, findings=[*sp.findings, extra])
    violating = len(error_keys(sp))
    assert mixed.headline.startswith(f"FAIL: {violating} of {JUDGED} judged layer sites violate μP, 1 could not be judged"
                                     " · regime:")
    # layer sites are counted, not findings: the same (name, site, probe) twice is one violating site
    doubled = replace(sp, findings=[*sp.findings, sp.errors[0]])
    assert doubled.headline == sp.headline


def test_an_incomplete_run_says_so(runs, tmp_path):
    run = Path(shutil.copytree(runs["mlp-sp"], tmp_path / "partial"))
    next(run.glob("shard-w512-*.parquet")).unlink()
    with pytest.raises(StoreError, match=r"is incomplete .*1 of 12 jobs missing.*--allow-incomplete"):
        check_run(run)
    report = check_run(run, allow_incomplete=True)
    assert not report.complete
    assert report.headline.endswith(" · INCOMPLETE run (some jobs missing)")
    assert report.to_dict()["complete"] is False
    assert "INCOMPLETE run" in report.render("text").splitlines()[1]
    assert "INCOMPLETE run" in report.render("markdown").splitlines()[0]


# --- the JSON contract -------------------------------------------------------------------------------------


def test_to_dict_contract(sp, runs):
    data = sp.to_dict()
    assert {"ok", "complete", "findings", "run", "run_dir", "spec", "regime", "probe", "tolerance", "counts",
            "diagnoses", "layers", "hyperparameters", "per_step"} <= set(data)
    assert data["ok"] is False and data["complete"] is True
    assert data["run"] == "mlp-sp" and data["spec"] == "mlp-sp" and data["run_dir"] == str(runs["mlp-sp"])
    assert data["regime"] == sp.regime and data["probe"] == "rms"
    assert data["tolerance"] == {"absolute": 0.25, "sigma": 3.0}
    assert data["counts"] == {"judged": JUDGED, "errors": len(sp.errors),
                              "warnings": sum(f.severity == "warning" for f in sp.findings)}
    assert len(data["findings"]) == len(sp.findings) > 0
    for item, f in zip(data["findings"], sp.findings, strict=True):
        assert CONTRACT_KEYS <= set(item)
        assert (item["name"], item["site"], item["probe"], item["step"]) == (f.name, f.site, f.probe, f.step)
        assert item["slope"] == f.slope and item["stderr"] == f.stderr and item["expected"] == f.expected
        assert item["verdict"] in ("exploding", "vanishing", "diverged", "undetermined")
        assert item["severity"] in ("error", "warning") and item["hint"] == f.hint and item["hint"]
    assert {d["rule"] for d in data["diagnoses"]} == {d.rule for d in sp.diagnoses}
    assert {(r["name"], r["site"], r["probe"]) for r in data["layers"]} == JUDGED_SITES
    assert data["hyperparameters"]["optimizer_family"] == sp.optimizer_family
    # per_step: every judged (layer, step), so an early rise that flattens later can be read
    steps = sorted(r["step"] for r in data["per_step"] if r["name"] == "readout" and r["site"] == "act_delta")
    assert steps == [1, 2, 3, 4, 5]
    json.dumps(data, allow_nan=False)  # plain JSON: no NaN or inf anywhere


def test_ok_is_false_iff_some_finding_is_an_error(sp, mup, unjudgeable):
    for report in (sp, mup, unjudgeable):
        assert report.ok is (not any(f.severity == "error" for f in report.findings))
        assert report.to_dict()["ok"] is report.ok


def test_render_json_is_to_dict(sp, mup):
    for report in (sp, mup):
        text = report.render("json")
        assert text.endswith("}\n")
        assert json.loads(text) == json.loads(json.dumps(report.to_dict()))
    assert json.loads(mup.render("json"))["findings"] == []


def test_render_json_failures_only_keeps_failing_layers(sp, mup):
    data = json.loads(sp.render("json", failures_only=True))
    failing = {(f.name, f.site, f.probe) for f in sp.findings}
    assert {(r["name"], r["site"], r["probe"]) for r in data["layers"]} == failing
    assert {(r["name"], r["site"], r["probe"]) for r in data["per_step"]} == failing
    assert len(data["findings"]) == len(sp.findings)
    empty = json.loads(mup.render("json", failures_only=True))
    assert empty["layers"] == [] and empty["per_step"] == [] and empty["counts"]["judged"] == JUDGED


def test_temporary_runs_have_no_run_dir(sp):
    temporary = replace(sp, temporary=True)
    assert temporary.to_dict()["run_dir"] is None
    assert "recorded in a temporary directory, now removed" in temporary.render("text")
    assert str(sp.run_dir) not in temporary.render("text")


# --- text ----------------------------------------------------------------------------------------------------


def test_render_text(sp):
    text = sp.render("text")
    assert str(sp) == text and sp.render() == text
    lines = text.splitlines()
    assert lines[0] == ("coordscope check · run mlp-sp · spec mlp-sp · widths 64,128,256,512 · seeds 3 · steps 0..5"
                        " · Adam lr 0.01 · probe rms")
    assert lines[1] == sp.headline
    assert lines[3].split() == ["layer", "site", "role", "step", "slope", "±", "se", "expected", "verdict", "failing",
                                "steps"]
    rows = [line.split() for line in lines[4:4 + JUDGED]]
    assert [(r[1], r[2]) for r in rows if r[0] == "FAIL"] == [
        (f.name, f.site) for f in sp.findings if f.severity == "error"]
    assert sum(r[0] == "ok" for r in rows) == JUDGED - len(error_keys(sp))
    assert "  diagnosis:" not in text and "\ndiagnosis:\n" in text
    for d in sp.diagnoses:
        assert f"  [{d.rule}] {d.title}: {', '.join(d.layers)}" in lines
        assert f"      fix: {d.hint}" in lines
    assert lines[-1].endswith(f"run dir {sp.run_dir}") and "tolerance max(0.25, 3·stderr)" in lines[-1]


def test_render_text_failures_only(sp, mup):
    full, short = sp.render("text").splitlines(), sp.render("text", failures_only=True).splitlines()
    assert short[1] == full[1]  # the same headline, counting every judged layer
    table = [line for line in short if line.startswith("  ok ") or line.startswith("  FAIL ")]
    assert table and all(line.startswith("  FAIL ") for line in table)
    assert len(table) == len(error_keys(sp))
    passing = mup.render("text", failures_only=True)
    assert not any(line.startswith("  ok ") for line in passing.splitlines())
    assert any(line.startswith("  ok ") for line in mup.render("text").splitlines())


# --- JUnit -----------------------------------------------------------------------------------------------------


def test_render_junit(sp):
    text = sp.render("junit")
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    root = ET.fromstring(text.split("\n", 1)[1])
    assert root.tag == "testsuites" and root.get("name") == "coordscope"
    (suite,) = root
    errors = [f for f in sp.findings if f.severity == "error"]
    assert suite.get("name") == "coordscope.mlp-sp"
    assert root.get("tests") == suite.get("tests") == str(JUDGED)
    assert root.get("failures") == suite.get("failures") == str(len(errors))
    cases = suite.findall("testcase")
    assert len(cases) == JUDGED and all(c.get("classname") == "coordscope.mlp-sp" for c in cases)
    assert {c.get("name") for c in cases} == {f"{n} · {s} [{p}]" for n, s, p in JUDGED_SITES}
    failed = {c.get("name"): c.find("failure") for c in cases if c.find("failure") is not None}
    assert set(failed) == {f"{f.name} · {f.site} [{f.probe}]" for f in errors}
    for f in errors:
        failure = failed[f"{f.name} · {f.site} [{f.probe}]"]
        assert failure.get("type") == f.verdict and failure.text == f.hint
        assert failure.get("message").startswith(f"{f.verdict}: slope {f.slope:+.2f} ± ")
        assert f" at step {f.step}, expected " in failure.get("message")


def test_render_junit_warning_goes_to_system_out(sp, mup):
    f = sp.errors[0]
    warned = replace(sp, findings=[replace(f, severity="warning")])
    root = ET.fromstring(warned.render("junit").split("\n", 1)[1])
    case = next(c for c in root.iter("testcase") if c.get("name") == f"{f.name} · {f.site} [rms]")
    assert case.find("failure") is None
    assert case.find("system-out").text.startswith(f"warning: {f.verdict}: slope ")
    assert case.find("system-out").text.endswith(f.hint)

    clean = ET.fromstring(mup.render("junit").split("\n", 1)[1])
    assert clean.get("failures") == "0" and clean.get("tests") == str(JUDGED)
    assert not list(clean.iter("failure")) and not list(clean.iter("system-out"))


# --- Markdown --------------------------------------------------------------------------------------------------


def test_render_markdown_of_a_failing_run(sp):
    text = sp.render("markdown")
    lines = text.splitlines()
    assert lines[0] == f"### ❌ coordscope check: {sp.headline}"
    assert lines[2].startswith("_run mlp-sp · spec mlp-sp") and lines[2].endswith("_")
    assert "|  | layer | site | role | step | slope ± se | expected | verdict | cause |" in lines
    for f in sp.findings:
        row = next(line for line in lines if line.startswith(f"| ❌ | `{f.name}` | {f.site} |"))
        assert row.endswith(f"| {f.verdict} | `{f.rule}` |")
    assert "**Diagnosis**" in lines
    for d in sp.diagnoses:
        bullet = next(line for line in lines if line.startswith(f"- **{d.title}** (`{d.rule}`): "))
        assert all(f"`{name}`" in bullet for name in d.layers)
    assert "<details><summary>All judged layers</summary>" in lines and "</details>" in lines
    details = lines[lines.index("<details><summary>All judged layers</summary>"):]
    assert sum(line.startswith("| ✅ |") for line in details) + sum(line.startswith("| ❌ |") for line in details) == JUDGED


def test_render_markdown_of_a_passing_run(mup):
    text = mup.render("markdown")
    assert text.startswith(f"### ✅ coordscope check: {mup.headline}\n")
    assert "No findings: every judged layer is within tolerance." in text
    assert "**Diagnosis**" not in text and "| cause |" not in text


def test_markdown_escapes_what_would_break_a_table(sp):
    f = sp.findings[0]
    odd = replace(f, name="blocks|0", rule=None, hint="x <b>bold</b> | y")
    text = replace(sp, findings=[odd], diagnoses=[]).render("markdown")
    row = next(line for line in text.splitlines() if "blocks" in line)
    assert "`blocks\\|0`" in row and row.endswith("| x &lt;b&gt;bold&lt;/b&gt; \\| y |")


def test_markdown_names_undetermined_layers(unjudgeable):
    text = unjudgeable.render("markdown")
    assert text.startswith("### ❌ coordscope check: FAIL: ")
    assert "(`undetermined`)" in text and "| undetermined | `undetermined` |" in text


# --- formats and writing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["html", "JSON", "", "txt"])
def test_unknown_format_is_refused(sp, fmt, tmp_path):
    with pytest.raises(ConfigError, match=f"unknown format {fmt!r} \\(choose from text, json, junit, markdown\\)"):
        sp.render(fmt)
    with pytest.raises(ConfigError, match="unknown format"):
        write(sp, fmt, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_write_to_a_file_and_return_the_text(sp, tmp_path, fmt):
    out = tmp_path / f"report.{fmt}"
    text = write(sp, fmt, out)
    assert text == sp.render(fmt) and out.read_text(encoding="utf-8") == text
    assert write(sp, fmt, str(out), failures_only=True) == sp.render(fmt, failures_only=True)
    assert out.read_text(encoding="utf-8") == sp.render(fmt, failures_only=True)
    assert write(sp, fmt, None) == text  # no output: render only


@pytest.mark.parametrize(("target", "reason"), [("missing/dir/report.json", "No such file or directory"),
                                                ("a-directory", "Is a directory")])
def test_write_to_an_unwritable_path_is_a_one_line_config_error(sp, tmp_path, target, reason):
    (tmp_path / "a-directory").mkdir()
    path = tmp_path / target
    with pytest.raises(ConfigError, match=f"cannot write .*{reason}") as info:
        write(sp, "json", path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
