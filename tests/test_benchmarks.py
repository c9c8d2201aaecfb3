"""The benchmark scripts run end to end on tiny settings and print every row they promise (the
figures themselves are the script's job on an idle machine, never a test's)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def run_script(name: str, *args: str) -> str:
    """The standard output of ``benchmarks/<name>`` run with ``args`` in a new process (failing on a non-zero exit)."""
    return subprocess.run([sys.executable, str(BENCHMARKS / name), *args],
                          check=True, capture_output=True, text=True, timeout=300).stdout


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mup") is None, reason="mup is not installed")
def test_vs_mup_runs_every_configuration_in_its_own_process() -> None:
    out = run_script("vs_mup.py", "--widths", "8,16", "--seeds", "1", "--repeats", "1")
    rows = {m.group(1).strip(): int(m.group(2))
            for m in re.finditer(r"^(coordscope run|mup|plain) +[\d.]+ +(\d+) ", out, re.MULTILINE)}
    assert set(rows) == {"coordscope run", "mup", "plain"}
    # Widths 8 and 16, one seed, three recorded steps: coordscope's rows against mup's l1 rows.
    assert rows["coordscope run"] > 4 * rows["mup"] > 0 and rows["plain"] == 0
    assert re.search(r"time ratio coordscope run / mup = [\d.]+ \(target <= 1\); statistics ratio = [\d.]+x", out)


def test_hook_cost_prints_hot_and_cold_times_of_each_work() -> None:
    out = run_script("hook_cost.py", "--repeats", "5")
    rows = re.findall(r"^(python|torch add|activation) +([\d.]+) +([\d.]+) +([\d.]+)$", out, re.MULTILINE)
    assert [row[0] for row in rows] == ["python", "torch add", "activation"]
    assert all(float(hot) > 0 and float(cold) > 0 for _, hot, cold, _ in rows)


def test_overhead_prints_a_ratio_per_case_and_recorder() -> None:
    out = run_script("overhead.py", "--case", "mlp-mup:32", "--steps", "3", "--rounds", "2")
    rows = re.findall(r"^mlp-mup:32 +(job|own loop) +([\d.]+) +([\d.]+) +([\d.]+) +([\d. ]+)$", out, re.MULTILINE)
    assert [row[0] for row in rows] == ["job", "own loop"]
    for _, plain, recorded, ratio, per_round in rows:
        assert float(plain) > 0 and float(recorded) > 0 and float(ratio) > 0
        assert len(per_round.split()) == 2  # one ratio per round
