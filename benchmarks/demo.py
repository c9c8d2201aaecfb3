"""How long ``coordscope demo`` computes: both coord checks and both LR sweeps, dashboard left out.

    python benchmarks/demo.py            # target (issue 17): at most 120 s on the 2-core CPU machine

Runs ``coordscope demo --no-app --runs <a fresh temporary directory>`` as a new process, as a user's shell
would, passing its output through, and prints the process's wall time — Python's start, recording, judging
and the verdicts, everything but set-up and the dashboard — against the target, the CPU time of the process
and its workers, each part's time as the demo reports it, the verdicts, and the machine's load average when
it started (other work on the machine slows the demo down: compare figures taken at a similar load).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COORDSCOPE = str(Path(sys.executable).with_name("coordscope"))
TARGET_S = 120.0
PART = re.compile(r"^  (\S+): (\d+\.\d) s$")  # the demo's "  <run>: 12.3 s" after each part
VERDICT = re.compile(r"^  \S*?([^/\s]+): ((?:PASS|FAIL|TRANSFERS|DOES NOT TRANSFER|INCONCLUSIVE).*)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quiet", action="store_true", help="do not pass the demo's own output through")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        command = [COORDSCOPE, "demo", "--no-app", "--runs", str(Path(tmp) / "runs")]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
            assert proc.stdout is not None
            lines = []
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                if not args.quiet:
                    print(line, end="", flush=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"coordscope demo failed (exit {proc.returncode})")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    parts = [m.groups() for m in map(PART.match, lines) if m]
    verdicts = [m.groups() for m in map(VERDICT.match, lines) if m]
    print(f"\n== coordscope demo --no-app ({os.cpu_count()} CPUs, load average {load:.2f} at the start) ==")
    for name, seconds in parts:
        print(f"  {name:<16} {float(seconds):6.1f} s")
    print(f"  {'parts together':<16} {sum(float(s) for _, s in parts):6.1f} s")
    print(f"demo compute time: {wall:.1f} s wall ({wall / TARGET_S:.2f}x the {TARGET_S:.0f} s target: "
          f"{'met' if wall <= TARGET_S else 'MISSED'}); CPU {cpu:.0f} s over the process and its workers")
    for name, verdict in verdicts:
        print(f"  {name:<16} {verdict.strip()}")


if __name__ == "__main__":
    main()
