"""How long the command line takes to answer ``--help``, beside the time of ``import torch``.

Each figure is the median of fresh processes (as a user's shell starts them), interleaved so that a noisy
machine slows both alike: ``coordscope --help``, ``coordscope --version``, ``coordscope samples`` and
``python -c "import torch"``. The command line imports neither torch nor streamlit before a command needs
them, so the first three should cost a small fraction of the last.

    python benchmarks/startup.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

COORDSCOPE = str(Path(sys.executable).with_name("coordscope"))
COMMANDS = {
    "coordscope --help": [COORDSCOPE, "--help"],
    "coordscope --version": [COORDSCOPE, "--version"],
    "coordscope samples": [COORDSCOPE, "samples"],
    'python -c "import torch"': [sys.executable, "-c", "import torch"],
}


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    for command in COMMANDS.values():  # warm the file cache
        wall(command)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.rounds):
        for name, command in COMMANDS.items():
            times[name].append(wall(command))
    torch_time = statistics.median(times['python -c "import torch"'])
    print(f"median of {args.rounds} fresh processes each, interleaved")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<28} {median:6.3f} s   {median / torch_time:5.2f}x import torch")


if __name__ == "__main__":
    main()
