"""coordscope.settings: one resolution order (flags, [tool.coordscope], the spec's DEFAULTS, built-ins),
validated before anything touches the disk."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

import coordscope
from coordscope.cli import main as cli
from coordscope.config import load_config
from coordscope.errors import ConfigError
from coordscope.settings import COORDCHECK_DEFAULTS, resolve_run, resolve_sweep
from coordscope.spec import Spec


def _spec(**defaults: object) -> Spec:
    return Spec(model=lambda width: nn.Linear(4, width), batches=lambda: iter([]), defaults=defaults, ref="t.py")


def _config(tmp_path: Path, text: str):
    path = tmp_path / "pyproject.toml"
    path.write_text(text)
    return load_config(path)


def test_each_source_fills_what_the_ones_above_leave_unset(tmp_path: Path) -> None:
    config = _config(tmp_path, "[tool.coordscope]\nwidths = [8, 16, 32]\nsteps = 2\n")
    spec = _spec(steps=9, seeds=4, lr=0.5)
    settings = resolve_run(spec, config=config, widths=[4, 8])
    assert settings.widths == (4, 8)  # the flag
    assert settings.steps == 2  # the pyproject, over the spec's DEFAULTS
    assert settings.seeds == (0, 1, 2, 3) and settings.lr == 0.5  # the spec's DEFAULTS
    assert settings.probes == tuple(COORDCHECK_DEFAULTS["probes"]) and settings.executor == "inline"  # built-ins


def test_a_sweep_reads_its_own_table_and_the_specs_sweep_defaults(tmp_path: Path) -> None:
    config = _config(tmp_path, "[tool.coordscope]\nwidths = [8, 16]\n[tool.coordscope.sweep]\nsteps = 7\n")
    settings = resolve_sweep(_spec(sweep={"lrs": [0.1, 0.2, 0.4], "widths": [32, 64]}), config=config)
    assert (settings.steps, settings.lrs, settings.widths) == (7, (0.1, 0.2, 0.4), (32, 64))


@pytest.mark.parametrize(("given", "words"), [
    ({"executor": "threads"}, "unknown executor 'threads'"),
    ({"device": "tpu9"}, "not a torch device"),
    ({"dtype": "int8"}, "unknown dtype 'int8'"),
    ({"workers": 0}, "workers must be a positive integer"),
    ({"widths": [64]}, "at least two widths"),
    ({"probes": "nope"}, "unknown probe 'nope'"),
])
def test_bad_settings_are_refused_before_the_run_directory_exists(tmp_path: Path, given, words) -> None:
    out = tmp_path / "run"
    with pytest.raises(ConfigError if "probe" not in words else coordscope.ProbeError, match=words):
        coordscope.run(_spec(), out=out, config=_config(tmp_path, ""), **given)
    assert not out.exists()


def test_cuda_on_a_machine_without_it_is_one_line(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="no usable CUDA device"):
        resolve_run(_spec(), device="cuda", config=_config(tmp_path, ""))


def test_workers_need_a_spec_they_can_import(tmp_path: Path) -> None:
    spec = Spec(model=lambda width: nn.Linear(4, width), batches=lambda: iter([]))
    with pytest.raises(ConfigError, match="needs a spec that workers can import"):
        resolve_run(spec, executor="processes", config=_config(tmp_path, ""))


def test_exact_differences_are_asked_for_by_flag_or_config_and_recorded_in_the_run(tmp_path: Path) -> None:
    assert resolve_run(_spec(), config=_config(tmp_path, "")).exact is False  # sampled by default
    assert resolve_run(_spec(), config=_config(tmp_path, "[tool.coordscope]\nexact = true\n")).exact is True
    with pytest.raises(ConfigError, match="exact"):
        resolve_run(_spec(), config=_config(tmp_path, '[tool.coordscope]\nexact = "yes"\n'))
    run_dir = tmp_path / "run"
    try:
        cli(["run", "mlp-mup", "--widths", "64,128", "--steps", "1", "--seeds", "1", "--exact", "--out", str(run_dir)])
    except SystemExit as done:
        assert done.code in (0, None)
    assert coordscope.read_meta(run_dir).exact is True
    with pytest.raises(ConfigError, match="exact"):  # a resumed run measures differences as it started
        coordscope.run("mlp-mup", widths=[64, 128], steps=1, seeds=1, out=run_dir, resume=True, progress=False)
