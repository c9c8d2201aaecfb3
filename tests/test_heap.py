"""The heap setting (coordscope.heap): freed memory is reused without page faults in the processes
coordscope owns — the command line and executor workers — and a caller's process is left alone.

Measured by the resident memory that one job's tensors — eight of 16 MiB, written then freed — leave
behind: by default glibc gives each such block its own mapping and unmaps it when it is freed, so the
next job gets fresh pages and a page fault on each; with the setting the 128 MiB stays in the process.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest
import torch

from coordscope.executors import execute

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the setting applies to glibc's malloc only")

JOB_MIB = 128


def kept_after_job(_: object = None) -> float:
    """MiB of resident memory a job leaves behind once its tensors are freed (module level, so that a
    worker process can run it)."""
    page_mib = os.sysconf("SC_PAGE_SIZE") / 2**20

    def resident() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * page_mib

    before = resident()
    tensors = [torch.ones(16 * 2**18) for _ in range(JOB_MIB // 16)]
    del tensors
    return resident() - before


def _kept_in_fresh_process(setup: str) -> float:
    """``kept_after_job`` in a new interpreter after ``setup``, with no MALLOC_* tuning inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    code = f"{setup}\nfrom test_heap import kept_after_job\nprint(kept_after_job())"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": os.path.dirname(__file__)},
                         check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def test_a_plain_process_hands_freed_blocks_back() -> None:
    # What the setting fixes: glibc hands a big freed block back to the kernel by default.
    assert _kept_in_fresh_process("import torch") < JOB_MIB / 8


def test_keep_freed_memory_keeps_them() -> None:
    setup = "from coordscope.heap import keep_freed_memory\nassert keep_freed_memory()"
    assert _kept_in_fresh_process(setup) > JOB_MIB * 7 / 8


def test_the_command_line_keeps_freed_memory() -> None:
    setup = ("from coordscope.cli import main\n"
             "try:\n    main(['samples'])\nexcept SystemExit as exc:\n    assert not exc.code, exc.code")
    assert _kept_in_fresh_process(setup) > JOB_MIB * 7 / 8


def test_worker_processes_keep_freed_memory() -> None:
    assert execute(kept_after_job, [None], executor="processes", workers=1) >= [JOB_MIB * 7 / 8]


def test_the_api_leaves_the_callers_process_alone(tmp_path: object) -> None:
    setup = ("import coordscope\n"
             f"coordscope.run('mlp-mup', widths=[8, 16], steps=1, seeds=1, out={str(tmp_path)!r} + '/run',"
             " progress=False)")
    assert _kept_in_fresh_process(setup) < JOB_MIB / 8
