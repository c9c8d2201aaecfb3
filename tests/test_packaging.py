"""The distribution works from a built wheel, not only from the editable checkout."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_and_runs_from_a_clean_venv(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(ROOT)],
                   check=True, capture_output=True)
    wheel = next(dist.glob("coordscope-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("coordscope/app/main.py", "coordscope/probes/builtin.py", "coordscope/sample_models/mlp.py",
                   "coordscope/py.typed"):
        assert module in names, module
    # Nothing but the package and its metadata at the top of site-packages: app/, probes/ and
    # sample_models/ of the checkout install under coordscope/.
    assert {n.split("/")[0] for n in names} == {"coordscope", next(n.split("/")[0] for n in names
                                                                  if n.endswith(".dist-info/METADATA"))}

    venv = tmp_path / "clean"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # Dependencies come from the test environment (a plain path entry: its editable-install hooks stay off).
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "-q", str(wheel)], check=True, capture_output=True)

    where = subprocess.run([python, "-c", "import coordscope, coordscope.app; print(coordscope.__file__)"],
                           check=True, capture_output=True, text=True, cwd=tmp_path).stdout.strip()
    assert where.startswith(str(venv)), where
    listed = subprocess.run([venv / "bin" / "coordscope", "samples"], check=True, capture_output=True,
                            text=True, cwd=tmp_path).stdout
    assert "mlp-mup" in listed and "mlp-sp" in listed
