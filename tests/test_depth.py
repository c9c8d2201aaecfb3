"""Depth coordinate checks: the depth axis of a run (``model(width, depth)``, ``--depths``, the ``depth``
column, shard names, meta), layers matched across depths from structure, the Depth-μP / CompleteP
judgement on the deep GPT samples, and old stores (schema 1, no ``depth``) that still load, judge and draw."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from torch import nn

import coordscope
from coordscope.blocks import depth_container, is_stream, position_keys, repeated_blocks
from coordscope.checking import check_run
from coordscope.cli import main
from coordscope.runmeta import SCHEMA_VERSION, read_meta
from coordscope.sample_models import SAMPLES, completep
from coordscope.store import load, shard_name

DEPTHS = [2, 4, 8, 16]


def depth_check(sample: str, out: Path, **kwargs: object) -> coordscope.Report:
    return coordscope.check(sample, out=str(out), depths=DEPTHS, widths=[64], steps=4, seeds=2, progress=False,
                            **kwargs)


# --- structure: what is matched across depths ---------------------------------------------------------

def test_the_depth_container_is_the_indexed_list_whose_length_changes_with_depth() -> None:
    names = {d: ["wte", *[f"blocks.{i}.mlp.0" for i in range(d)], *[f"blocks.{i}" for i in range(d)],
                 "hidden.0", "hidden.1", "<output>"] for d in (2, 4, 8)}
    container, counts = depth_container(names) or (None, {})
    assert container == "blocks" and counts == {2: 2, 4: 4, 8: 8}
    assert depth_container({2: ["hidden.0", "hidden.1"], 4: ["hidden.0", "hidden.1"]}) is None
    assert position_keys("blocks.7.mlp.0", "blocks", 8) == [("blocks.{last}.mlp.0", "last")]
    assert position_keys("blocks.3", "blocks", 8) == [("blocks.{mid}", "mid")]
    assert position_keys("blocks.0.attn#1[0]", "blocks", 8) == [("blocks.{first}.attn#1[0]", "first")]
    assert position_keys("blocks.5.ln_1", "blocks", 8) == []  # neither first, middle nor last
    assert {k for k, _ in position_keys("blocks.0", "blocks", 2)} == {"blocks.{first}", "blocks.{mid}"}
    assert position_keys("wte", "blocks", 8) == [("wte", "")]
    assert is_stream("blocks.{last}", "blocks") and not is_stream("blocks.{last}.mlp", "blocks")


def test_repeated_blocks_are_list_items_with_children_found_on_any_model() -> None:
    model = completep.build(64, 4, "completep")
    assert repeated_blocks(model) == [f"blocks.{i}" for i in range(4)]
    plain = nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.Linear(3, 3), nn.ReLU()), nn.Linear(3, 1))
    assert repeated_blocks(plain) == ["1"]


def test_shard_names_are_unique_per_width_depth_and_seed_and_old_names_stay() -> None:
    assert shard_name(64, 0) == "shard-w64-s0.parquet"
    names = {shard_name(w, s, d) for w in (64, 128) for d in (2, 4, 8) for s in (0, 1)}
    assert len(names) == 12 and shard_name(64, 0) not in names


# --- the judgement on the samples ----------------------------------------------------------------------

@pytest.mark.parametrize("sample", ["gpt-completep", "gpt-depth-mup"])
def test_completep_and_depth_mup_pass_a_depth_sweep(sample: str, tmp_path: Path) -> None:
    report = depth_check(sample, tmp_path / "run")
    errors = [(f.name, f.site, f.step, f.slope) for f in report.findings if f.severity == "error"]
    assert report.ok, f"{sample}: {errors}"
    judged = set(report.judged.filter(pl.col("layer_judged")).get_column("name").to_list())
    assert {"blocks.{last}", "blocks.{mid}", "<output>"} <= judged


def test_unscaled_branches_fail_naming_the_residual_stream_and_the_multiplier(tmp_path: Path) -> None:
    report = depth_check("gpt-depth-unscaled", tmp_path / "run")
    assert not report.ok
    stream = [f for f in report.errors if f.name == "blocks.{last}"]
    assert stream and all(f.verdict == "exploding" and f.rule == "branch_unscaled" for f in stream)
    assert all("residual stream" in f.hint and "multiply every residual branch by L^-α" in f.hint for f in stream)
    assert [d.rule for d in report.diagnoses] == ["branch_unscaled"]
    payload = report.to_dict()
    assert payload["ok"] is False and any(f["rule"] == "branch_unscaled" for f in payload["findings"])


SEED_SETS = ("0,1", "2,3", "4,5", "6,7", "8,9")  # five disjoint seed sets, as the width dogfood


@pytest.mark.slow
@pytest.mark.parametrize("seeds", SEED_SETS)
@pytest.mark.parametrize("sample", [n for n, s in SAMPLES.items() if s.axis == "depth"])
def test_depth_samples_get_their_verdict_and_rule_on_every_seed_set(sample: str, seeds: str, tmp_path: Path) -> None:
    expected = SAMPLES[sample]
    result = CliRunner().invoke(main, ["check", sample, "--seeds", seeds, "--out", str(tmp_path / "r"),
                                       "--format", "json"])
    report = json.loads(result.stdout)
    errors = [f for f in report["findings"] if f["severity"] == "error"]
    if expected.expect == "pass":
        assert result.exit_code == 0 and report["ok"], [(f["name"], f["site"], f["step"], f["slope"]) for f in errors]
    else:
        assert result.exit_code == 1 and not report["ok"]
        assert {f["rule"] for f in errors if expected.culprit in f["name"]} == {expected.bug}


def test_a_branch_multiplier_without_the_depth_learning_rate_is_named(tmp_path: Path) -> None:
    report = depth_check("gpt-depth-lr-unscaled", tmp_path / "run")
    assert not report.ok
    rules = {f.rule for f in report.errors}
    assert rules == {"depth_lr_unscaled"}, rules
    assert "hidden learning rate ∝ depth^+0.00" in report.diagnoses[0].hint


def test_depth_samples_are_registered_for_the_depth_axis() -> None:
    deep = {n: s for n, s in SAMPLES.items() if s.axis == "depth"}
    assert set(deep) == {"gpt-completep", "gpt-depth-mup", "gpt-depth-unscaled", "gpt-depth-lr-unscaled",
                         "gpt-depth-overscaled", "gpt-completep-sweep", "gpt-depth-unscaled-sweep"}
    result = CliRunner().invoke(main, ["samples"])
    assert "gpt-completep" in result.output


# --- the store ---------------------------------------------------------------------------------------

def test_a_depth_run_records_its_axes_and_a_depth_column(tmp_path: Path) -> None:
    run_dir = coordscope.run("gpt-completep", depths=[2, 4], widths=[32, 64], steps=1, seeds=1,
                             out=tmp_path / "run", progress=False)
    meta = read_meta(run_dir)
    assert meta.depths == (2, 4) and meta.widths == (32, 64) and meta.schema_version == SCHEMA_VERSION >= 2
    assert {(j.width, j.depth) for j in meta.jobs} == {(32, 2), (32, 4), (64, 2), (64, 4)}
    assert set(meta.depth_hyperparameters) == {"2", "4"}
    frame = load(run_dir)
    assert frame.schema["depth"] == pl.Int64
    assert set(frame.get_column("depth").unique().to_list()) == {2, 4}
    assert frame.filter(pl.col("depth") == 4, pl.col("name") == "blocks.3").height > 0  # the residual stream
    report = check_run(run_dir)
    names = set(report.fits.get_column("name").to_list())
    assert "blocks.{last} @ width 64" in names  # depth fits at every width
    assert any(n.endswith(" @ depth 4") for n in names)  # and width fits at every depth
    from coordscope.htmlreport import write_html_report

    html = write_html_report(run_dir, tmp_path / "deep.html").read_text()
    assert '"text":"depth"' in html.replace(" ", "") and "blocks.{last}" in html  # curves against depth


def test_an_old_store_without_depth_still_loads_judges_and_draws(tmp_path: Path) -> None:
    """A store as schema 1 wrote it: no depth column, no depths key, schema_version 1."""
    from coordscope.htmlreport import write_html_report

    run_dir = coordscope.run("mlp-mup", widths=[64, 128, 256], steps=2, seeds=2, out=tmp_path / "old",
                             progress=False)
    before = check_run(run_dir)
    data = json.loads((run_dir / "meta.json").read_text())
    data["schema_version"] = 1
    data.pop("depths", None)
    (run_dir / "meta.json").write_text(json.dumps(data))
    frame = load(run_dir)
    assert "depth" not in frame.columns and read_meta(run_dir).depths is None
    report = check_run(run_dir)
    assert report.ok == before.ok and report.fits.height == before.fits.height > 0
    assert [(f.name, f.site, f.verdict) for f in report.findings] == [(f.name, f.site, f.verdict)
                                                                      for f in before.findings]
    html = write_html_report(run_dir, tmp_path / "report.html")
    assert Path(html).is_file() and Path(html).stat().st_size > 10_000


# --- bad input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("flags", "message"), [
    (["--depths", "4,2"], "depths must be increasing"),
    (["--depths", "2,x"], "--depths: 'x' is not an integer"),
    (["--depths", "4"], "at least two depths"),
    (["--depths", "0,2"], "depths must be positive"),
    (["--depths", "2,2"], "depths contain duplicates"),
])
def test_bad_depths_are_one_line_and_exit_2(flags: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["check", "gpt-completep", *flags, "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_model_without_a_depth_argument_is_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["run", "mlp-mup", "--depths", "2,4", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "model(width, depth)" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_depths_come_from_pyproject_and_resume_keeps_the_plan(tmp_path: Path) -> None:
    project = tmp_path / "pyproject.toml"
    project.write_text("[tool.coordscope]\ndepths = [2, 4]\nwidths = [32]\nsteps = 1\nseeds = 1\n")
    out = tmp_path / "run"
    run_dir = coordscope.run("gpt-completep", out=out, config=project, progress=False)
    meta = read_meta(run_dir)
    assert meta.depths == (2, 4) and meta.widths == (32,)
    shard = run_dir / shard_name(32, 0, 4)
    before = pl.read_parquet(shard).sort("name", "site", "probe", "step")
    shard.unlink()
    coordscope.run("gpt-completep", out=out, config=project, resume=True, progress=False)
    after = pl.read_parquet(shard).sort("name", "site", "probe", "step")
    assert before.drop("value").equals(after.drop("value"))
    with pytest.raises(coordscope.ConfigError, match="depths"):
        coordscope.run("gpt-completep", out=out, config=project, depths=[2, 8], resume=True, progress=False)


def test_a_model_whose_depth_changes_no_module_list_is_undetermined_not_passed(tmp_path: Path) -> None:
    from tiny import Tiny, mse, tiny_batches

    spec = coordscope.Spec(model=lambda width, depth: Tiny(width), batches=tiny_batches, loss=mse)
    report = coordscope.check(spec, depths=[2, 4], widths=[8], steps=2, seeds=2, out=str(tmp_path / "r"),
                              progress=False)
    assert not report.ok and report.regime == "undetermined"
    assert report.findings[0].rule == "depth_undetermined" and report.findings[0].verdict == "undetermined"


def test_a_depth_sweep_runs_on_worker_processes(tmp_path: Path) -> None:
    run_dir = coordscope.run("gpt-completep", depths=[2, 4], widths=[32], steps=1, seeds=1, out=tmp_path / "run",
                             executor="processes", workers=2, progress=False)
    assert sorted(p.name for p in run_dir.glob("shard-*")) == ["shard-w32-d2-s0.parquet", "shard-w32-d4-s0.parquet"]
