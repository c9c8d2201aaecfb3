"""Keep freed memory in the process while coordinate checks train models on the CPU (glibc only).

Why: a coordinate check builds and frees a model, its gradients, its optimizer state and PyTorch's
temporaries job after job. glibc's ``malloc`` hands big blocks back to the kernel when they are freed
(``munmap``, or trimming the top of the heap), so the next job's tensors arrive as fresh pages, and every
4 KiB page costs a page fault the first time it is written. On a virtual machine that fault can cost
more than the arithmetic done on the page: on the 2-core development VM, writing 32 MiB of fresh memory
took 8 ms against 0.8 ms for memory already owned, and ``benchmarks/vs_mup.py`` measures the effect on a
whole sweep. PyTorch's CPU tuning guide makes the same point when it recommends jemalloc or tcmalloc;
this is the same remedy with the allocator already loaded.

:func:`keep_freed_memory` tells ``malloc`` to serve blocks up to 32 MiB (glibc's largest setting) from
its heap, and to keep up to 2 GiB of free heap rather than trim it, so freed memory is reused without
faults; larger blocks still get mappings of their own. The process's peak memory stays that of its
largest job, but what it frees is not handed back to the kernel until the process exits. That is why
only processes coordscope owns call it: the command line (:mod:`coordscope.cli`) and the worker
processes of :mod:`coordscope.executors`. The Python API leaves a caller's process as it found it.
"""

from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>: free heap top kept before it is trimmed, in bytes
M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>: blocks at least this large get their own mmap
MMAP_THRESHOLD = 32 * 1024 * 1024  # the largest value glibc accepts on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD = 2**31 - 1  # the largest int mallopt takes: keep up to 2 GiB of free heap


def keep_freed_memory() -> bool:
    """Make glibc's ``malloc`` keep freed memory for reuse in this process. Returns whether it did
    (False on other C libraries, where nothing changes). Affects the whole process until it exits."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: glibc is already loaded
    except AttributeError:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    trim = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    mmap = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    return bool(trim and mmap)
