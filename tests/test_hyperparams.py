"""coordscope.hyperparams: the lr, weight decay and ε in effect per parameter and width, and the lint of μP's
rules against the optimizer family the run measured (never the optimizer's name)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import coordscope
from coordscope.hyperparams import collect
from coordscope.runmeta import read_meta

GRID = {"widths": [64, 128, 256], "steps": 2, "seeds": 2, "progress": False}


def test_collect_reads_each_parameters_group() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    optimizer = torch.optim.AdamW([{"params": model[0].parameters(), "lr": 0.1},
                                   {"params": model[1].parameters(), "lr": 0.01, "weight_decay": 0.5}], eps=1e-6)
    values = collect(model, optimizer)
    assert values["0.weight"] == {"lr": 0.1, "weight_decay": 0.01, "eps": 1e-6}
    assert values["1.bias"] == {"lr": 0.01, "weight_decay": 0.5, "eps": 1e-6}


def test_the_run_records_them_per_width(tmp_path: Path) -> None:
    meta = read_meta(coordscope.run("mlp-mup", out=tmp_path / "r", **GRID))
    hidden = {int(w): params["hidden.0.weight"]["lr"] for w, params in meta.hyperparameters.items()}
    assert hidden == pytest.approx({64: 0.01, 128: 0.005, 256: 0.0025})  # μP Adam: lr / width_mult
    assert {params["input.weight"]["lr"] for params in meta.hyperparameters.values()} == {0.01}


@pytest.mark.parametrize(("sample", "family", "notes"), [
    ("mlp-mup", "Adam-like", set()),
    ("mlp-sp", "Adam-like", {("hidden", "lr")}),
    ("mlp-mup-sgd", "SGD-like", set()),
    ("mlp-muon", "orthogonalised", set()),
    ("mlp-schedulefree", "Adam-like", set()),
    ("mlp-lion", "Adam-like", set()),  # sign-type: every update entry is ±lr
    ("mlp-lion-one-lr", "Adam-like", {("hidden", "lr")}),
    ("gpt-bug-embedding-lr", "Adam-like", {("input", "lr")}),
])
def test_the_measured_family_and_its_rules(tmp_path: Path, sample: str, family: str, notes: set) -> None:
    report = coordscope.check(sample, out=tmp_path / "r", **GRID)
    assert report.optimizer_family == family
    assert {(n.role, n.key) for n in report.notes} == notes
    data = report.to_dict()["hyperparameters"]
    assert data["optimizer_family"] == family and len(data["notes"]) == len(notes)
