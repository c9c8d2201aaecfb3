"""``[tool.coordscope]`` in pyproject.toml and ``--override``: parsed strictly, applied with flags winning."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from coordscope.checking import check
from coordscope.cli import main
from coordscope.config import Config, Override, find_pyproject, load_config
from coordscope.errors import ConfigError

FULL = """
[project]
name = "someone-elses-model"

[tool.coordscope]
widths = [32, 64, 128]
steps = 3
seeds = [0, 1]
lr = 0.02
probes = ["rms", "l1"]
tolerance = 0.3
sigma = 2.5
probe = "rms"

[[tool.coordscope.override]]
name = "readout*"
site = "act_delta"
expected = [0.0, 1.0]
tolerance = 0.4

[[tool.coordscope.override]]
name = "hidden.*"
ignore = true
"""


def _pyproject(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pyproject.toml"
    path.write_text(text)
    return path


def test_full_table_is_read(tmp_path):
    config = load_config(_pyproject(tmp_path, FULL))
    assert config.run == {"widths": [32, 64, 128], "steps": 3, "seeds": [0, 1], "lr": 0.02, "probes": ["rms", "l1"]}
    assert (config.tolerance, config.sigma, config.probe) == (0.3, 2.5, "rms")
    assert config.overrides == (Override("readout*", "act_delta", expected=(0.0, 1.0), tolerance=0.4),
                                Override("hidden.*", "*", ignore=True))


def test_nearest_pyproject_is_found_walking_up(tmp_path, monkeypatch):
    _pyproject(tmp_path, FULL)
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_pyproject() == tmp_path / "pyproject.toml"
    assert load_config().run["steps"] == 3


def test_no_pyproject_or_no_table_is_an_empty_config(tmp_path):
    assert load_config(_pyproject(tmp_path, "[project]\nname = 'x'\n")) == Config(path=tmp_path / "pyproject.toml")


@pytest.mark.parametrize(("text", "message"), [
    ("[tool.coordscope]\nwidht = [1]\n", "unknown key 'widht'"),
    ("[tool.coordscope]\nwidths = '64,128'\n", "widths = '64,128' has the wrong type"),
    ("[tool.coordscope]\nsteps = true\n", "steps = True has the wrong type"),
    ("[tool.coordscope]\ntolerance = -1\n", "tolerance must be a non-negative number"),
    ("[tool.coordscope]\nprobe = 3\n", "probe must be a probe name"),
    ("[tool.coordscope]\noverride = 3\n", "override must be an array of tables"),
    ("[[tool.coordscope.override]]\nsite = 'act'\nignore = true\n", "needs name = \"GLOB\""),
    ("[[tool.coordscope.override]]\nname = 'x'\nsite = 'acts'\nignore = true\n", "unknown site 'acts'"),
    ("[[tool.coordscope.override]]\nname = 'x'\nexpected = [1, 2, 3]\n", "expected must be a slope or [low, high]"),
    ("[[tool.coordscope.override]]\nname = 'x'\nexpected = [1, 0]\n", "low <= high"),
    ("[[tool.coordscope.override]]\nname = 'x'\n", "says nothing to do"),
    ("[[tool.coordscope.override]]\nname = 'x'\nignore = 'yes'\n", "ignore must be true or false"),
    ("[[tool.coordscope.override]]\nname = 'x'\nignore = true\ncolour = 1\n", "unknown key 'colour' in an override"),
    ("[tool.coordscope\n", "not valid TOML"),
])
def test_malformed_config_is_one_line(tmp_path, text, message):
    with pytest.raises(ConfigError) as error:
        load_config(_pyproject(tmp_path, text))
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(("text", "override"), [
    ("readout*:act_delta:expected=0..1,tol=0.4", Override("readout*", "act_delta", expected=(0.0, 1.0), tolerance=0.4)),
    ("*:act:expected=-0.5", Override("*", "act", expected=(-0.5, -0.5))),
    ("hidden.?:*:ignore", Override("hidden.?", "*", ignore=True)),
    ("<output>:act:probe=l1,tolerance=1", Override("<output>", "act", probe="l1", tolerance=1.0)),
])
def test_override_cli_form(text, override):
    assert Override.parse(text) == override


@pytest.mark.parametrize(("text", "message"), [
    ("readout", "expected PATTERN:SITE:key=value"),
    ("readout:act_delta:", "expected PATTERN:SITE:key=value"),
    ("readout:act_delta:expected=big", "'big' is not a number"),
    ("readout:act_delta:colour=red", "cannot read 'colour=red'"),
    ("readout:weights:ignore", "unknown site 'weights'"),
    (":act:ignore", "the name pattern is empty"),
])
def test_bad_override_is_one_line(text, message):
    with pytest.raises(ConfigError) as error:
        Override.parse(text)
    assert message in str(error.value)


def test_glob_matches_whole_names_only():
    import re

    regex = re.compile(Override("hidden.*", ignore=True).name_regex())
    assert regex.match("hidden.0") and regex.match("hidden.0.weight")
    assert not regex.match("xhidden.0") and not regex.match("hiddenX0")


def test_config_settings_reach_the_check(mlp_runs, tmp_path):
    """The file's overrides and tolerance apply to a run directory; the CLI's override comes after and wins."""
    sp = mlp_runs["mlp-sp"]
    assert not check(sp, config=Config()).ok
    loose = _pyproject(tmp_path, "[tool.coordscope]\ntolerance = 2.0\n")
    assert check(sp, config=loose).ok
    assert check(sp, config=loose).tolerance.absolute == 2.0
    assert not check(sp, config=loose, tolerance=0.25).ok
    ignoring = _pyproject(tmp_path, "[[tool.coordscope.override]]\nname = '*'\nignore = true\n")
    assert check(sp, config=ignoring).ok
    assert not check(sp, config=ignoring, overrides=["readout:act_delta:expected=0"]).ok


def test_cli_reads_the_nearest_pyproject_and_rejects_a_bad_one(mlp_runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _pyproject(tmp_path, "[[tool.coordscope.override]]\nname = '*'\nsite = '*'\nignore = true\n")
    assert CliRunner().invoke(main, ["check", mlp_runs["mlp-sp"]]).exit_code == 0
    _pyproject(tmp_path, "[tool.coordscope]\nsigma = 'three'\n")
    result = CliRunner().invoke(main, ["check", mlp_runs["mlp-sp"]])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "sigma must be a number" in result.stderr
