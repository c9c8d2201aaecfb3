"""The comparison with ``mup`` runs end to end on a tiny sweep and prints every row it promises (the
figures themselves are the script's job on an idle machine, never a test's)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "vs_mup.py"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mup") is None, reason="mup is not installed")
def test_vs_mup_runs_every_configuration_in_its_own_process() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--widths", "8,16", "--seeds", "1", "--repeats", "1"],
                         check=True, capture_output=True, text=True, timeout=300).stdout
    rows = {m.group(1).strip(): int(m.group(2))
            for m in re.finditer(r"^(coordscope run|mup|plain) +[\d.]+ +(\d+) ", out, re.MULTILINE)}
    assert set(rows) == {"coordscope run", "mup", "plain"}
    # Widths 8 and 16, one seed, three recorded steps: coordscope's rows against mup's l1 rows.
    assert rows["coordscope run"] > 4 * rows["mup"] > 0 and rows["plain"] == 0
    assert re.search(r"time ratio coordscope run / mup = [\d.]+ \(target <= 1\); statistics ratio = [\d.]+x", out)
