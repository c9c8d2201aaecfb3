"""Dimension sweeps: one declared dimension (``DIMENSIONS`` in a spec; ``--dim d_ff``) swept on its own at one
width — the spec declaration, the store (a column per dimension, shard names, meta), the roles that dimension
implies, and the verdicts on the sample transformer sized by FFN size, head count and expert count."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

import coordscope
from coordscope.checking import check_run
from coordscope.cli import main
from coordscope.errors import ConfigError, SpecError
from coordscope.layers import infer_layers
from coordscope.runmeta import SCHEMA_VERSION, RunMeta, read_meta
from coordscope.sample_models import SAMPLES, dims
from coordscope.spec import load_spec
from coordscope.store import load

SWEEPS = ("d_ff", "n_heads", "n_experts")


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], coordscope.Report]:
    """Both samples, each dimension swept at its declared values (the samples' DEFAULTS: 3 seeds, 5 steps)."""
    root = tmp_path_factory.mktemp("dims")
    return {(sample, dim): coordscope.check(sample, dim=dim, out=str(root / f"{sample}-{dim}"), progress=False)
            for sample in ("dims-mup", "dims-sp") for dim in SWEEPS}


# --- the store -------------------------------------------------------------------------------------------

def test_a_dimension_sweep_keeps_the_width_and_adds_a_column_named_after_the_dimension(reports) -> None:
    run_dir = reports[("dims-mup", "d_ff")].run_dir
    rows = load(run_dir)
    assert rows.schema["d_ff"] == pl.Int64
    assert rows["width"].unique().to_list() == [dims.WIDTH]
    assert sorted(rows["d_ff"].unique().to_list()) == dims.DIMENSIONS["d_ff"]
    meta = read_meta(run_dir)
    assert meta.schema_version == SCHEMA_VERSION == 3
    assert meta.dims == {"d_ff": tuple(dims.DIMENSIONS["d_ff"])} and meta.axis() == "d_ff"
    assert sorted(meta.hyperparameters) == sorted(str(v) for v in dims.DIMENSIONS["d_ff"])
    assert {p.name for p in run_dir.glob("shard-*.parquet")} == {
        f"shard-w64-d_ff{v}-s{s}.parquet" for v in dims.DIMENSIONS["d_ff"] for s in range(3)}
    raw = json.loads((run_dir / "meta.json").read_text())
    assert raw["jobs"][0]["dims"] == {"d_ff": 64} and raw["dims"] == {"d_ff": [64, 128, 256, 512]}
    assert RunMeta.from_json(raw) == meta


def test_an_older_store_without_dims_reads_as_a_width_check() -> None:
    meta = RunMeta.from_json({"run": "r", "spec": "s", "widths": [64, 128], "seeds": [0], "steps": 1,
                              "jobs": [{"width": 64, "seed": 0, "shard": "a"}], "schema_version": 2})
    assert meta.dims is None and meta.axis() is None and meta.jobs[0].dims == ()


# --- roles: what the swept dimension implies ---------------------------------------------------------------

def test_roles_follow_the_swept_dimension_not_the_width() -> None:
    spec = load_spec("dims-mup")
    ffn = infer_layers(spec, (64, 64), dims=({"d_ff": 64}, {"d_ff": 128}))
    assert ffn["mlp.c_fc.weight"].role == "input" and ffn["mlp.c_proj.weight"].role == "output"
    assert ffn["mlp.act"].role == "hidden" and not ffn["mlp.c_proj"].rescaled  # inside the model: judged
    assert ffn["attn.qkv.weight"].role == "fixed" and not any(ffn["attn.attn_logits"].scaling_dims)
    heads = infer_layers(spec, (64, 64), dims=({"n_heads": 2}, {"n_heads": 4}))
    assert heads["attn.qkv.weight"].role == "input" and heads["attn.c_proj.weight"].role == "output"
    assert heads["attn.attn_logits"].scaling_dims[1]  # (batch, heads, query, key): more heads
    assert heads["mlp.c_proj.weight"].role == "fixed"
    experts = infer_layers(spec, (64, 64), dims=({"n_experts": 2}, {"n_experts": 4}))
    assert experts["mlp.router.weight"].role == "input"
    assert experts["mlp"].role == "fixed"  # a module with parameters of its own is recorded: the mixture's output


# --- verdicts ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dim", SWEEPS)
def test_the_mup_sample_passes_every_dimension(reports, dim: str) -> None:
    report = reports[("dims-mup", dim)]
    assert report.ok, [(f.name, f.site, f.step, f.slope) for f in report.findings]
    assert report.findings == []
    judged = set(report.layers.filter(pl.col("judged"))["name"].to_list())
    assert "attn.attn_logits" in judged and "<output>" in judged


@pytest.mark.parametrize(("dim", "culprit", "verdict"), [("d_ff", "mlp.c_proj", "exploding"),
                                                          ("n_heads", "attn.c_proj", "exploding"),
                                                          ("n_experts", "mlp", "vanishing")])
def test_the_sp_sample_fails_each_dimension_at_the_layer_that_sums_over_it(reports, dim: str, culprit: str,
                                                                            verdict: str) -> None:
    report = reports[("dims-sp", dim)]
    assert not report.ok
    blamed = {(f.name, f.verdict) for f in report.findings if f.severity == "error"}
    assert (culprit, verdict) in blamed, blamed
    assert all(f.name != "attn.attn_logits" for f in report.findings)  # a head count is not a head size
    if dim != "n_experts":  # the output-like matrix: the readout rule, read along the swept dimension
        found = next(f for f in report.findings if f.name == culprit and f.site == "act_delta")
        assert found.slope is not None and found.slope > 0.5
        assert found.rule == "readout_unscaled" and f"read “width” as {dim}" in found.hint


def test_the_text_report_names_the_dimension_it_fits_against(reports) -> None:
    report = reports[("dims-sp", "d_ff")]
    text = report.render("text")
    assert "d_ff 64,128,256,512" in text and "d log2(d_ff)" in text and "widths 64" in text


def test_a_recorded_dimension_sweep_is_judged_again_from_its_directory(reports) -> None:
    first = reports[("dims-sp", "n_heads")]
    again = check_run(first.run_dir)
    assert [(f.name, f.site, f.step) for f in again.findings] == [(f.name, f.site, f.step) for f in first.findings]


# --- bad input: one line, exit 2, nothing written ---------------------------------------------------------------

SPEC_WITHOUT_DIMS = '''
import torch
from torch import nn
def model(width, d_ff=32):
    return nn.Sequential(nn.Linear(4, d_ff), nn.ReLU(), nn.Linear(d_ff, 3))
def batches():
    while True:
        yield torch.randn(8, 4), torch.randint(0, 3, (8,))
'''


@pytest.mark.parametrize(("flags", "message"), [
    (["--dim", "heads"], "declares no dimension 'heads' (declared: d_ff, n_heads, n_experts)"),
    (["--dim", "d_ff=64"], "needs at least two d_ff values"),
    (["--dim", "d_ff=64,x"], "comma-separated integers"),
    (["--dim", "d_ff", "--depths", "2,4"], "sweep d_ff or depth, not both"),
    (["--dim", "d_ff", "--widths", "64,128"], "runs at one width"),
])
def test_bad_dimension_flags_are_one_line_and_exit_2(tmp_path: Path, flags: list[str], message: str) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["check", "dims-mup", *flags, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


def test_a_spec_declares_its_dimensions_and_its_model_takes_them(tmp_path: Path) -> None:
    plain = tmp_path / "plain.py"
    plain.write_text(SPEC_WITHOUT_DIMS)
    with pytest.raises(ConfigError, match="declares no dimension 'd_ff' .*DIMENSIONS"):
        coordscope.run(str(plain), dim="d_ff=32,64", out=str(tmp_path / "a"), progress=False)
    declared = tmp_path / "declared.py"
    declared.write_text(SPEC_WITHOUT_DIMS + "DIMENSIONS = {'d_ff': [16, 32, 64], 'n_experts': []}\n")
    assert load_spec(str(declared)).dimensions == {"d_ff": (16, 32, 64), "n_experts": ()}
    with pytest.raises(SpecError, match=r"model\(128, n_experts=2\), but model\(\) takes no such keyword"):
        coordscope.run(str(declared), dim="n_experts=2,4", out=str(tmp_path / "b"), progress=False)
    with pytest.raises(ConfigError, match="declares 'n_experts' without values"):
        coordscope.run(str(declared), dim="n_experts", out=str(tmp_path / "c"), progress=False)
    broken = tmp_path / "broken.py"
    broken.write_text(SPEC_WITHOUT_DIMS + "DIMENSIONS = {'d_ff': [0, 32]}\n")
    with pytest.raises(SpecError, match=r"DIMENSIONS\['d_ff'\] must be a list of positive integers"):
        load_spec(str(broken))
    assert not any((tmp_path / d).exists() for d in "abc")
    report = coordscope.check(str(declared), dim="d_ff", seeds=1, steps=2, out=str(tmp_path / "ok"),
                              progress=False)
    assert report.meta.dims == {"d_ff": (16, 32, 64)}
    assert set(load(tmp_path / "ok")["d_ff"].unique().to_list()) == {16, 32, 64}


def test_the_samples_declare_what_they_sweep() -> None:
    assert SAMPLES["dims-mup"].axis == SAMPLES["dims-sp"].axis == "d_ff"
    result = CliRunner().invoke(main, ["samples"])
    assert "dims-sp" in result.output and "d_ff sweep: fails" in result.output
