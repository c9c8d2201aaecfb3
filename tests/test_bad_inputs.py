"""The catalogue of bad inputs: each exits 2 with one line naming the problem, no traceback, and leaves
no file under a final name. (``check``-specific entries live in tests/test_check.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from coordscope.cli import main

FAST = ["--widths", "16,32", "--steps", "1", "--seeds", "1"]


def _spec(tmp_path: Path, body: str) -> str:
    path = tmp_path / "spec.py"
    path.write_text(body)
    return str(path)


GOOD = """
import torch
from torch import nn
def model(width):
    return nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 3))
def batches():
    while True:
        yield torch.randn(8, 4), torch.randint(0, 3, (8,))
"""

CASES: dict[str, tuple[list[str] | None, str, str]] = {
    # name: (argv with {spec}/{out}/{file} placeholders, spec body or "", expected message fragment)
    "missing spec file": (["run", "nope/missing.py", "--out", "{out}"], "", "spec file 'nope/missing.py' does not exist"),
    "unknown spec name": (["run", "no_such_sample", "--out", "{out}"], "", "not a file, an importable module or a sample"),
    "spec with a syntax error": (["run", "{spec}", "--out", "{out}"], "def model(:\n", "failed to import: SyntaxError"),
    "spec without model": (["run", "{spec}", "--out", "{out}"], "def batches():\n    yield 1\n", "does not define model()"),
    "spec attribute missing": (["run", "{spec}:NOPE", "--out", "{out}"], GOOD, "has no attribute 'NOPE'"),
    "model(width) raises": (["run", "{spec}", *FAST, "--out", "{out}"],
                            GOOD + "\ndef model(width):\n    raise RuntimeError('too wide')\n",
                            "model(16) raised RuntimeError: too wide"),
    "model(width) returns no module": (["run", "{spec}", *FAST, "--out", "{out}"], GOOD + "\ndef model(width):\n    return 3\n",
                                       "model(16) returned int, not an nn.Module"),
    "batches() yields nothing": (["run", "{spec}", *FAST, "--out", "{out}"], GOOD + "\ndef batches():\n    return iter(())\n",
                                 "batches() yielded nothing"),
    "loss is not a scalar": (["run", "{spec}", *FAST, "--out", "{out}"], GOOD + "\ndef loss(model, batch):\n    return model(batch[0])\n",
                             "the loss must be a scalar tensor"),
    "optimizer() raises": (["run", "{spec}", *FAST, "--out", "{out}"],
                           GOOD + "\ndef optimizer(model, lr):\n    raise TypeError('no such group')\n",
                           "optimizer(model, 0.01) raised at width 16: TypeError: no such group"),
    "optimizer.step() raises": (["run", "{spec}", *FAST, "--out", "{out}"],
                                GOOD + "\nclass Broken(torch.optim.SGD):\n    def step(self, closure=None):\n"
                                "        raise RuntimeError('call train() first')\n"
                                "def optimizer(model, lr):\n    return Broken(model.parameters(), lr=lr)\n",
                                "the optimizer's step() raised at width 16, step 0: RuntimeError: call train() first"),
    "sweep whose optimizer raises": (["sweep", "{spec}", "--widths", "16,32", "--lrs", "0.1,0.2,0.4", "--steps", "1",
                                      "--out", "{out}"],
                                     GOOD + "\ndef optimizer(model, lr):\n    raise TypeError('no such group')\n",
                                     "optimizer(model, 0.1) raised at width 16: TypeError: no such group"),
    "device that does not parse": (["run", "{spec}", *FAST, "--device", "gpu0", "--out", "{out}"], GOOD,
                                   "'gpu0' is not a torch device"),
    "widths unsorted": (["run", "{spec}", "--widths", "32,16", "--out", "{out}"], GOOD, "widths must be increasing"),
    "widths duplicated": (["run", "{spec}", "--widths", "16,16,32", "--out", "{out}"], GOOD, "widths contain duplicates"),
    "width not positive": (["run", "{spec}", "--widths", "0,16", "--out", "{out}"], GOOD, "widths must be positive"),
    "width not an integer": (["run", "{spec}", "--widths", "16,32.5", "--out", "{out}"], GOOD, "'32.5' is not an integer"),
    "a single width": (["run", "{spec}", "--widths", "16", "--out", "{out}"], GOOD, "at least two widths"),
    "zero steps": (["run", "{spec}", "--widths", "16,32", "--steps", "0", "--out", "{out}"], GOOD, "steps must be a positive integer"),
    "zero seeds": (["run", "{spec}", "--widths", "16,32", "--seeds", "0", "--out", "{out}"], GOOD, "seeds must be at least 1"),
    "negative lr": (["run", "{spec}", *FAST, "--lr", "-0.1", "--out", "{out}"], GOOD, "lr must be positive and finite"),
    "NaN lr": (["run", "{spec}", *FAST, "--lr", "nan", "--out", "{out}"], GOOD, "lr must be positive and finite"),
    "lr not a number": (["run", "{spec}", *FAST, "--lr", "fast", "--out", "{out}"], GOOD, "'fast' is not a number"),
    "unknown probe": (["run", "{spec}", *FAST, "--probes", "rms,median", "--out", "{out}"], GOOD, "unknown probe 'median'"),
    "probe file missing": (["run", "{spec}", *FAST, "--probes", "gone.py:fn", "--out", "{out}"], GOOD, "probe file 'gone.py' does not exist"),
    "unknown dtype": (["run", "{spec}", *FAST, "--dtype", "int8", "--out", "{out}"], GOOD, "Invalid value for '--dtype'"),
    "unknown executor": (["run", "{spec}", *FAST, "--executor", "slurm", "--out", "{out}"], GOOD, "Invalid value for '--executor'"),
    "output path is a file": (["run", "{spec}", *FAST, "--out", "{file}"], GOOD, "is a file, not a directory"),
    "output directory not empty": (["run", "{spec}", *FAST, "--out", "{full}"], GOOD, "is not empty (use --overwrite"),
    "overwrite a non-run directory": (["run", "{spec}", *FAST, "--out", "{full}", "--overwrite"], GOOD,
                                      "it is not a coordscope run"),
    "resume with nothing to resume": (["run", "{spec}", *FAST, "--out", "{out}", "--resume"], GOOD, "nothing to resume"),
    "malformed [tool.coordscope] value": (["run", "{spec}", *FAST, "--out", "{out}", "--config", "{badcfg}"], GOOD,
                                          "[tool.coordscope]: widths = 'wide' has the wrong type"),
    "[tool.coordscope] not TOML": (["run", "{spec}", *FAST, "--out", "{out}", "--config", "{nottoml}"], GOOD,
                                   "not valid TOML"),
    "unknown flag": (["run", "{spec}", "--width", "16,32"], GOOD, "No such option '--width'. (Did you mean one of: '--depths', '--widths'?) (see coordscope run --help)"),
}

if not torch.cuda.is_available():  # where CUDA works, --device cuda is good input
    CASES["device without a driver"] = (["run", "{spec}", *FAST, "--device", "cuda", "--out", "{out}"], GOOD,
                                        "no usable CUDA device")


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_line(tmp_path, case):
    argv, body, message = CASES[case]
    spec = _spec(tmp_path, body) if body else ""
    (tmp_path / "afile").write_text("precious\n")
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("precious\n")
    out = tmp_path / "out"
    (tmp_path / "bad.toml").write_text('[tool.coordscope]\nwidths = "wide"\n')
    (tmp_path / "nottoml.toml").write_text("[tool.coordscope\n")
    args = [a.format(spec=spec, out=out, file=tmp_path / "afile", full=full, badcfg=tmp_path / "bad.toml",
                     nottoml=tmp_path / "nottoml.toml") for a in argv]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("coordscope: error: ") and message in lines[0], lines[0]
    assert "Traceback" not in result.output
    # nothing under a final name was written, and nothing precious was touched
    assert not out.exists() or not list(out.glob("*"))
    assert (tmp_path / "afile").read_text() == "precious\n" and (full / "notes.txt").read_text() == "precious\n"


def test_traceback_flag_shows_where_the_users_code_failed(tmp_path: Path) -> None:
    spec = _spec(tmp_path, GOOD + "\ndef model(width):\n    return build_broken(width)\n"
                               "def build_broken(width):\n    raise RuntimeError('too wide')\n")
    args = ["run", spec, *FAST, "--out", str(tmp_path / "out")]
    plain = CliRunner().invoke(main, args)
    assert plain.exit_code == 2 and "Traceback" not in plain.stderr and len(plain.stderr.strip().splitlines()) == 1
    full = CliRunner().invoke(main, ["--traceback", *args])
    assert full.exit_code == 2
    assert "Traceback" in full.stderr and "build_broken" in full.stderr  # the user's own frame
    assert full.stderr.strip().splitlines()[-1] == plain.stderr.strip()
