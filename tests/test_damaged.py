"""Damaged stores are named, not mistaken for results; a run that diverges at its widest width is
recorded whole and reported as ``diverged`` at that width and step."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import coordscope
from coordscope.cli import main
from coordscope.runmeta import SCHEMA_VERSION
from coordscope.store import is_complete


@pytest.fixture(scope="module")
def healthy(tmp_path_factory) -> Path:
    return coordscope.run("mlp-mup", widths=[64, 128, 256], steps=2, seeds=1,
                          out=tmp_path_factory.mktemp("healthy") / "run", progress=False)


def _truncate(run: Path) -> str:
    shard = run / "shard-w128-s0.parquet"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    return shard.name


def _garble(run: Path) -> str:
    shard = run / "shard-w64-s0.parquet"
    shard.write_bytes(b"this is not parquet at all" * 10)
    return shard.name


def _drop_meta(run: Path) -> str:
    (run / "meta.json").unlink()
    return "meta.json"


def _newer_schema(run: Path) -> str:
    meta = json.loads((run / "meta.json").read_text())
    meta["schema_version"] = SCHEMA_VERSION + 1
    (run / "meta.json").write_text(json.dumps(meta))
    return "written by a newer coordscope"


def _broken_meta(run: Path) -> str:
    (run / "meta.json").write_text("{ not json")
    return "meta.json: not valid JSON"


DAMAGE = {"truncated shard": _truncate, "corrupt shard": _garble, "missing meta.json": _drop_meta,
          "newer schema": _newer_schema, "meta.json not JSON": _broken_meta}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("command", ["check", "report"])
def test_damaged_store_is_named_in_one_line(tmp_path, healthy, damage, command):
    run = tmp_path / "run"
    shutil.copytree(healthy, run)
    what = DAMAGE[damage](run)
    args = [command, str(run)] + (["--out", str(tmp_path / "r.html")] if command == "report" else [])
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("coordscope: error: ") and what in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "r.html").exists()


def test_divergence_at_the_widest_width_is_recorded_and_reported(tmp_path):
    spec_file = tmp_path / "diverging.py"
    spec_file.write_text('''
import torch
from torch import nn

def model(width):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 4))

def batches():
    while True:
        yield torch.randn(16, 8), torch.randint(0, 4, (16,))

def optimizer(model, lr):   # only the widest model gets an absurd learning rate
    wide = model[0].out_features >= 256
    return torch.optim.SGD(model.parameters(), lr=1e12 if wide else lr)
''')
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["check", str(spec_file), "--widths", "64,128,256", "--steps", "4",
                                       "--seeds", "2", "--lr", "0.01", "--out", str(out), "--format", "json"])
    assert result.exit_code == 1, (result.output, result.exception)
    assert is_complete(out)  # every job, the diverged ones included, finished and was kept
    frame = coordscope.load(out)
    assert frame.group_by("width", "seed").len().height == 6
    assert not frame.filter(width=256)["value"].is_finite().all()
    assert frame.filter(width=64)["value"].is_finite().all()
    report = json.loads(result.stdout)
    diverged = [f for f in report["findings"] if f["verdict"] == "diverged"]
    assert diverged and all(f["severity"] == "error" for f in diverged)
    assert {f.get("first_width") for f in diverged} == {256}
    assert min(f["step"] for f in diverged) >= 1
