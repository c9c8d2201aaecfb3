"""The coord-check store (:mod:`coordscope.store`) and its record, ``meta.json`` (:mod:`coordscope.runmeta`).

Real Parquet files throughout: shards written by :class:`ShardWriter` and read back with pyarrow and polars,
a run directory prepared, resumed and overwritten, damaged shards and meta files refused in one line, and
``meta.json`` round-tripped with the keys a newer coordscope may add.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from coordscope.errors import ConfigError, CoordscopeError, StoreError
from coordscope.roles import Layer
from coordscope.runmeta import (
    META,
    SCHEMA_VERSION,
    JobRecord,
    RunMeta,
    read_meta,
    update_meta,
    write_meta,
)
from coordscope.store import (
    CONTRACT_COLUMNS,
    ROW_GROUP_ROWS,
    SCHEMA,
    ShardWriter,
    check_shard,
    is_complete,
    load,
    local_dir,
    missing_jobs,
    prepare_run_dir,
    remove_stale_temporaries,
    scan,
    shard_name,
    shard_paths,
)

NAMES = ("input", "hidden.0", "readout")


def write_step(writer: ShardWriter, step: int, scale: float = 1.0) -> None:
    """One step's rows: an ``act`` and a ``param_grad`` row per name, values that encode (step, row)."""
    names = [n for n in NAMES for _ in range(2)]
    sites = ["act", "param_grad"] * len(NAMES)
    values = [scale * (step * 100 + i) for i in range(len(names))]
    writer.write(step, names, sites, ["rms"] * len(names), values, ["hidden"] * len(names),
                 ["Linear"] * len(names))


def make_meta(widths: tuple[int, ...] = (8, 16), seeds: tuple[int, ...] = (0,), **changes) -> RunMeta:
    jobs = tuple(JobRecord(w, s, shard_name(w, s)) for w in widths for s in seeds)
    meta = RunMeta(kind="coordcheck", run="r", spec="mlp-mup", widths=widths, seeds=seeds, steps=2, jobs=jobs)
    return replace(meta, **changes)


def make_run(run_dir: Path, *, shards: tuple[tuple[int, int], ...] | None = None, **changes) -> RunMeta:
    """A run directory with meta.json and a real shard for each (width, seed) in ``shards`` (default: all jobs)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = make_meta(**changes)
    write_meta(run_dir, meta)
    for width, seed in shards if shards is not None else [(j.width, j.seed) for j in meta.jobs]:
        writer = ShardWriter(run_dir, meta.run, width, seed)
        for step in range(meta.steps + 1):
            write_step(writer, step, scale=width)
        writer.commit()
    return meta


# --- shards ------------------------------------------------------------------------------------------------


def test_shard_name_encodes_width_and_seed_and_matches_the_glob(tmp_path):
    assert shard_name(256, 3) == "shard-w256-s3.parquet"
    assert shard_name(8, 0) != shard_name(80, 0) != shard_name(8, 10)
    for width, seed in [(8, 0), (16, 1)]:
        (tmp_path / shard_name(width, seed)).write_bytes(b"")
    assert [p.name for p in shard_paths(tmp_path)] == ["shard-w16-s1.parquet", "shard-w8-s0.parquet"]


def test_shard_is_invisible_until_commit_then_holds_every_row(tmp_path):
    writer = ShardWriter(tmp_path, "run-a", 32, 7)
    for step in range(3):
        write_step(writer, step)
    assert writer.tmp.exists() and writer.tmp.name.startswith(".") and writer.tmp.name.endswith(".tmp")
    assert not writer.final.exists()
    assert shard_paths(tmp_path) == []  # an unfinished job is never read
    assert writer.rows == 18

    final = writer.commit()
    assert final == tmp_path / "shard-w32-s7.parquet" and final.is_file()
    assert not writer.tmp.exists()
    assert shard_paths(tmp_path) == [final]
    table = pq.read_table(final)
    assert table.schema.equals(SCHEMA)
    df = pl.from_arrow(table)
    assert df.height == 18
    assert set(df["run"]) == {"run-a"} and set(df["width"]) == {32} and set(df["seed"]) == {7}
    assert df["step"].to_list() == [s for s in range(3) for _ in range(6)]
    assert df["value"].to_list() == [float(s * 100 + i) for s in range(3) for i in range(6)]
    assert df.filter(pl.col("step") == 1)["name"].to_list() == [n for n in NAMES for _ in range(2)]


def test_rows_stream_in_bounded_row_groups(tmp_path):
    n_steps, per_step = 5, 600  # 3000 rows: more than two row groups' worth
    writer = ShardWriter(tmp_path, "r", 8, 0)
    for step in range(n_steps):
        values = np.arange(per_step, dtype=np.float64) + step * per_step
        writer.write(step, [f"n{i}" for i in range(per_step)], ["act"] * per_step, ["rms"] * per_step, values,
                     ["hidden"] * per_step, ["Linear"] * per_step)
    path = writer.commit()
    meta = pq.ParquetFile(path).metadata
    assert meta.num_rows == n_steps * per_step == writer.rows
    assert meta.num_row_groups >= 2
    assert max(meta.row_group(i).num_rows for i in range(meta.num_row_groups)) < ROW_GROUP_ROWS + per_step
    values = pq.read_table(path, columns=["value"])["value"].to_numpy()
    np.testing.assert_array_equal(values, np.arange(n_steps * per_step, dtype=np.float64))


def test_abort_and_an_exception_inside_the_context_leave_nothing(tmp_path):
    writer = ShardWriter(tmp_path, "r", 8, 0)
    write_step(writer, 0)
    writer.abort()
    assert not writer.tmp.exists() and not writer.final.exists()
    writer.abort()  # twice is harmless

    with pytest.raises(RuntimeError, match="job died"), ShardWriter(tmp_path, "r", 16, 0) as writer2:
        write_step(writer2, 0)
        assert writer2.tmp.exists()
        raise RuntimeError("job died")
    assert list(tmp_path.iterdir()) == []


def test_write_table_follows_the_buffered_rows_and_counts(tmp_path):
    writer = ShardWriter(tmp_path, "r", 8, 0, filename="custom.parquet")
    write_step(writer, 0)
    extra = pa.table({
        "run": ["r"], "width": [8], "seed": [0], "step": [9], "name": ["<loss>"], "site": ["loss"],
        "probe": ["value"], "value": [2.5], "role": ["loss"], "module": ["<loss>"],
    }, schema=SCHEMA)
    writer.write_table(extra)
    assert writer.rows == 7
    path = writer.commit()
    assert path.name == "custom.parquet"
    df = pl.read_parquet(path)
    assert df["step"].to_list() == [0] * 6 + [9]
    assert df.row(-1, named=True)["value"] == 2.5 and df.row(-1, named=True)["name"] == "<loss>"


# --- run directories ---------------------------------------------------------------------------------------


def test_prepare_run_dir_creates_nested_and_accepts_an_empty_directory(tmp_path):
    out = tmp_path / "a" / "b" / "run"
    assert prepare_run_dir(out) == out and out.is_dir()
    assert prepare_run_dir(out) == out  # still empty: fine


def test_prepare_run_dir_refuses_a_file(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    for kwargs in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(ConfigError, match="is a file, not a directory"):
            prepare_run_dir(target, **kwargs)
    assert target.read_text() == "keep me"


def test_prepare_run_dir_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "data.csv").write_text("1,2\n")
    with pytest.raises(ConfigError, match=r"is not empty \(use --overwrite .* or --resume"):
        prepare_run_dir(tmp_path / "out")
    assert (tmp_path / "out" / "data.csv").exists()


def test_overwrite_deletes_only_a_coordscope_run(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    with pytest.raises(ConfigError, match=f"refusing to overwrite .*not a coordscope run \\(no {META}\\)"):
        prepare_run_dir(other, overwrite=True)
    assert (other / "thesis.tex").read_text() == "precious"

    run = tmp_path / "run"
    make_run(run)
    (run / "stray.txt").write_text("x")
    assert prepare_run_dir(run, overwrite=True) == run
    assert run.is_dir() and list(run.iterdir()) == []


def test_resume_keeps_a_run_and_refuses_what_is_not_one(tmp_path):
    run = tmp_path / "run"
    make_run(run)
    before = sorted(p.name for p in run.iterdir())
    assert prepare_run_dir(run, resume=True) == run
    assert sorted(p.name for p in run.iterdir()) == before

    with pytest.raises(ConfigError, match="nothing to resume"):
        prepare_run_dir(tmp_path / "never-ran", resume=True)
    assert not (tmp_path / "never-ran").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="nothing to resume"):
        prepare_run_dir(tmp_path / "empty", resume=True)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "x").write_text("")
    with pytest.raises(StoreError, match="meta.json: missing"):
        prepare_run_dir(junk, resume=True)


def test_prepare_run_dir_under_a_file_is_a_one_line_config_error(tmp_path):
    (tmp_path / "blocker").write_text("")
    with pytest.raises(ConfigError, match="cannot create output directory") as info:
        prepare_run_dir(tmp_path / "blocker" / "run")
    assert "\n" not in str(info.value)


def test_remove_stale_temporaries_keeps_finished_shards(tmp_path):
    make_run(tmp_path, shards=((8, 0),))
    dead = ShardWriter(tmp_path, "r", 16, 0)  # a job killed mid-way leaves its temporary behind
    write_step(dead, 0)
    dead._flush()
    (tmp_path / f".{META}.123.tmp").write_text("{")
    (tmp_path / "notes.tmp").write_text("the user's, not a coordscope temporary")
    assert remove_stale_temporaries(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [META, "notes.tmp", "shard-w8-s0.parquet"]
    assert remove_stale_temporaries(tmp_path) == 0


def test_missing_jobs_and_is_complete(tmp_path):
    meta = make_run(tmp_path, widths=(8, 16, 32), seeds=(0, 1), shards=((8, 0), (16, 1)))
    missing = missing_jobs(tmp_path)
    assert [(j.width, j.seed) for j in missing] == [(8, 1), (16, 0), (32, 0), (32, 1)]
    assert missing_jobs(tmp_path, meta) == missing
    assert not is_complete(tmp_path)

    # every shard there but the status still says running: not complete
    for job in missing:
        with ShardWriter(tmp_path, "r", job.width, job.seed) as writer:
            write_step(writer, 0)
            writer.commit()
    assert missing_jobs(tmp_path) == []
    assert not is_complete(tmp_path)
    update_meta(tmp_path, status="complete")
    assert is_complete(tmp_path)
    (tmp_path / shard_name(32, 1)).unlink()
    assert not is_complete(tmp_path)


# --- reading -----------------------------------------------------------------------------------------------


def test_load_reads_every_shard_with_the_contract_columns(tmp_path):
    make_run(tmp_path, widths=(8, 16), seeds=(0, 1))
    df = load(tmp_path)
    assert set(CONTRACT_COLUMNS) <= set(df.columns) and {"role", "module"} <= set(df.columns)
    assert df.height == 4 * 3 * 6
    assert sorted(df.select("width", "seed").unique().rows()) == [(8, 0), (8, 1), (16, 0), (16, 1)]
    # each shard's values were scaled by its width
    assert df.filter((pl.col("width") == 16) & (pl.col("step") == 1))["value"].min() == 16 * 100
    assert scan(tmp_path).select(pl.len()).collect().item() == df.height


def test_load_a_recorded_run(tmp_path, mlp_runs):
    run = tmp_path / "run"
    shutil.copytree(mlp_runs["mlp-mup"], run)
    meta = read_meta(run)
    assert meta.kind == "coordcheck" and meta.status == "complete" and is_complete(run)
    df = load(run)
    assert sorted(df["width"].unique()) == list(meta.widths)
    assert sorted(df["seed"].unique()) == list(meta.seeds)
    assert sorted(df["step"].unique()) == list(range(meta.steps + 1))
    assert len(shard_paths(run)) == len(meta.jobs)
    assert {"act", "act_delta", "param_grad"} <= set(df["site"].unique())

    (run / meta.jobs[0].shard).unlink()
    assert missing_jobs(run) == [meta.jobs[0]] and not is_complete(run)
    assert load(run).filter(pl.col("width") == meta.jobs[0].width).height < df.filter(
        pl.col("width") == meta.jobs[0].width).height


@pytest.mark.parametrize(("setup", "message"), [
    ("no-dir", "does not exist"),
    ("no-meta", "meta.json: missing"),
    ("no-shards", "no finished shards yet"),
    ("garbage-shard", r"shard-w8-s0\.parquet: damaged Parquet shard"),
    ("truncated-shard", r"shard-w8-s0\.parquet: damaged Parquet shard"),
    ("foreign-parquet", r"not a coordscope shard \(missing columns .*value"),
])
def test_unreadable_runs_are_one_line_store_errors(tmp_path, setup, message):
    run = tmp_path / "run"
    if setup != "no-dir":
        run.mkdir()
    if setup not in ("no-dir", "no-meta"):
        write_meta(run, make_meta(widths=(8,)))
    shard = run / shard_name(8, 0)
    if setup == "garbage-shard":
        shard.write_bytes(b"this is not parquet at all")
    elif setup == "truncated-shard":
        make_run(run, widths=(8,))
        shard.write_bytes(shard.read_bytes()[:40])
    elif setup == "foreign-parquet":
        pq.write_table(pa.table({"run": ["r"], "width": [8], "seed": [0], "step": [0], "name": ["x"],
                                 "site": ["act"], "probe": ["rms"]}), shard)
    for read in (load, scan):
        with pytest.raises(StoreError, match=message) as info:
            read(run)
        assert "\n" not in str(info.value)
    if setup in ("garbage-shard", "truncated-shard", "foreign-parquet"):
        with pytest.raises(StoreError, match=message):
            check_shard(shard)


def test_shards_that_disagree_on_types_fail_to_load_as_a_store_error(tmp_path):
    make_run(tmp_path, shards=((8, 0),))
    good = pq.read_table(tmp_path / shard_name(8, 0))
    bad = good.set_column(good.schema.get_field_index("value"), "value",
                          pa.array([str(v) for v in good["value"].to_pylist()]))
    pq.write_table(bad, tmp_path / shard_name(16, 0))
    check_shard(tmp_path / shard_name(16, 0))  # the columns are all there: only reading finds out
    with pytest.raises(StoreError, match="cannot read shards"):
        load(tmp_path)


def test_check_shard_accepts_a_real_shard(tmp_path):
    make_run(tmp_path, shards=((8, 0),))
    check_shard(tmp_path / shard_name(8, 0))  # no exception


# --- local_dir ---------------------------------------------------------------------------------------------


def test_local_dir_takes_paths_and_file_uris(tmp_path):
    assert local_dir("runs/a") == Path("runs/a")
    assert local_dir(tmp_path) == tmp_path
    assert local_dir(f"file://{tmp_path}/run") == tmp_path / "run"


@pytest.mark.parametrize(("uri", "message"), [
    ("mock:///bucket/run", r"only local directories and file:// URIs are supported \(got a _MockFileSystem\)"),
    ("nosuchscheme://host/run", "not a filesystem URI pyarrow understands"),
])
def test_local_dir_refuses_other_filesystems(uri, message):
    with pytest.raises(ConfigError, match=message):
        local_dir(uri)


def test_local_dir_error_for_an_unavailable_filesystem_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jvm"))  # no libjvm there: HDFS cannot load, whatever is installed
    with pytest.raises(ConfigError, match="not a filesystem URI pyarrow understands") as info:
        local_dir("hdfs://localhost:1/run")
    assert "\n" not in str(info.value)


# --- meta.json ---------------------------------------------------------------------------------------------


def full_meta() -> RunMeta:
    return RunMeta(
        kind="lrsweep", run="sweep", spec="specs/gpt.py", widths=(64, 128), seeds=(0, 1), steps=20,
        jobs=(JobRecord(64, 0, "shard-a.parquet", 0.01), JobRecord(128, 1, "shard-b.parquet", 0.1)),
        status="complete", description="a sweep", lr=None, lrs=(0.01, 0.1), probes=("rms", "spectral"),
        optimizer="AdamW", device="cuda", dtype="bfloat16", eval_batches=4,
        layers={"hidden.0": Layer("hidden", "Linear", (64, 64), (True, True)),
                "readout": Layer("output", "Readout", (10, 64), (False, True), rescaled=True)},
        hyperparameters={"64": {"hidden.0.weight": {"lr": 0.01, "weight_decay": 0.0}}},
        versions={"torch": "2.4.0"}, created="2024-01-01T00:00:00", updated="2024-01-02T00:00:00",
        error="boom",
    )


def test_runmeta_round_trips_through_json(tmp_path):
    meta = full_meta()
    data = json.loads(json.dumps(meta.to_json()))
    assert data["jobs"][0] == {"width": 64, "seed": 0, "shard": "shard-a.parquet", "lr": 0.01}
    assert data["layers"]["readout"]["rescaled"] is True and data["layers"]["hidden.0"]["shape"] == [64, 64]
    assert data["schema_version"] == SCHEMA_VERSION and "extra" not in data
    assert RunMeta.from_json(data) == meta
    write_meta(tmp_path, meta)
    assert read_meta(tmp_path) == meta
    assert [p.name for p in tmp_path.iterdir()] == [META]  # the temporary was renamed away


def test_to_json_leaves_out_unset_optional_keys_but_keeps_lr_and_error():
    data = make_meta().to_json()
    assert "lrs" not in data and "eval_batches" not in data and "updated" not in data
    assert data["lr"] is None and data["error"] is None
    assert data["jobs"] == [{"width": 8, "seed": 0, "shard": "shard-w8-s0.parquet"},
                            {"width": 16, "seed": 0, "shard": "shard-w16-s0.parquet"}]
    back = RunMeta.from_json(data)
    assert back == make_meta() and back.jobs[0].lr is None


def test_unknown_keys_are_kept_and_written_back(tmp_path):
    data = make_meta().to_json()
    data["future_key"] = {"nested": [1, 2]}
    data["gpu_hours"] = 3.5
    (tmp_path / META).write_text(json.dumps(data))
    meta = read_meta(tmp_path)
    assert meta.extra == {"future_key": {"nested": [1, 2]}, "gpu_hours": 3.5}
    write_meta(tmp_path, meta)
    written = json.loads((tmp_path / META).read_text())
    assert written["future_key"] == {"nested": [1, 2]} and written["gpu_hours"] == 3.5
    updated = update_meta(tmp_path, status="incomplete", error="KeyboardInterrupt")
    assert updated.extra == meta.extra
    written = json.loads((tmp_path / META).read_text())
    assert written["future_key"] == {"nested": [1, 2]} and written["status"] == "incomplete"


def test_update_meta_changes_rewrites_and_stamps(tmp_path):
    make_run(tmp_path)
    assert read_meta(tmp_path).updated is None
    new = update_meta(tmp_path, status="complete")
    assert new.status == "complete" and new.updated
    assert read_meta(tmp_path) == new
    assert read_meta(tmp_path).jobs == make_meta().jobs
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 1, 99, "2", 1.5])
def test_a_newer_or_odd_schema_version_is_refused(tmp_path, version):
    data = make_meta().to_json()
    data["schema_version"] = version
    (tmp_path / META).write_text(json.dumps(data))
    with pytest.raises(StoreError, match=r"written by a newer coordscope .*upgrade") as info:
        read_meta(tmp_path)
    assert "\n" not in str(info.value)
    with pytest.raises(StoreError, match="newer coordscope"):
        load(tmp_path)


@pytest.mark.parametrize("key", ["run", "spec", "widths", "seeds", "steps", "jobs"])
def test_a_missing_key_is_a_one_line_store_error(tmp_path, key):
    data = make_meta().to_json()
    del data[key]
    (tmp_path / META).write_text(json.dumps(data))
    with pytest.raises(StoreError, match=f"meta.json: missing key '{key}'") as info:
        read_meta(tmp_path)
    assert "\n" not in str(info.value) and str(tmp_path) in str(info.value)


@pytest.mark.parametrize(("change", "message"), [
    ({"widths": 64}, r"malformed \(TypeError"),
    ({"steps": "five"}, r"malformed \(ValueError"),
    ({"jobs": [{"width": 8, "seed": 0}]}, "missing key 'shard'"),
    ({"layers": {"x": "hidden"}}, "malformed"),
])
def test_a_mistyped_key_is_a_one_line_store_error(change, message):
    data = {**make_meta().to_json(), **change}
    with pytest.raises(StoreError, match=message) as info:
        RunMeta.from_json(data, where="somewhere/meta.json")
    assert str(info.value).startswith("somewhere/meta.json: ") and "\n" not in str(info.value)


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "not valid JSON"),
    ("[1, 2, 3]", "expected a JSON object"),
])
def test_a_meta_that_is_not_a_json_object_is_refused(tmp_path, text, message):
    (tmp_path / META).write_text(text)
    with pytest.raises(StoreError, match=message):
        read_meta(tmp_path)


def test_store_errors_are_coordscope_errors():
    assert issubclass(StoreError, CoordscopeError) and issubclass(ConfigError, CoordscopeError)
    assert not issubclass(StoreError, ConfigError)


def test_a_run_dir_with_glob_characters_in_its_path_loads_checks_and_reports(tmp_path):
    """Paths are paths, not patterns: ``[0, 1]`` or ``*`` in a run directory's name (a seed list pasted into
    --out) used to reach polars as a glob that matched nothing."""
    from click.testing import CliRunner

    import coordscope
    from coordscope.cli import main

    out = tmp_path / "runs" / "seeds[0, 1]*?"
    coordscope.run("mlp-mup", widths=[32, 64], steps=1, seeds=[0, 1], out=out, progress=False)
    assert coordscope.load(out).height > 0
    assert coordscope.check(out).complete
    result = CliRunner().invoke(main, ["check", str(out), "--format", "json"])
    assert result.exit_code in (0, 1) and json.loads(result.output)["run_dir"] == str(out)
    assert CliRunner().invoke(main, ["report", str(out), "--out", str(tmp_path / "r.html")]).exit_code == 0
