"""Which coordinates stand for a big tensor when coordscope measures a *difference*: a fixed subset of blocks.

Why: ``param_update`` (W_{t+1} − W_t) needs W_t after the optimizer has overwritten it, and ``act_delta``
(x_t − x_0) needs x_0 for the whole run. Keeping whole copies costs a second copy of every parameter —
recording an MLP at width 4096 peaked at 1.48× the memory of the same plain training — and two passes over
that copy at every step. So for a tensor with more than ``size`` entries coordscope keeps its values at about
``size`` fixed positions only, and measures the difference there. ``rms`` and ``l1`` are means over
entries, so the subset's mean is an unbiased estimate of the whole tensor's;
``benchmarks/sampling_error.py`` measures the error against the exact values (docs/own-loop.md has the
figures). When any recorded probe is not a mean (``absmax``, ``spectral``, your own), every difference is
exact, and ``exact=True`` asks for that with the means too. ``param`` and ``param_grad`` need no copy and
are always read whole.

The positions: the tensor is seen as a matrix of ``rows`` × ``cols`` (a parameter's first dimension by the
rest; an activation's last dimension by the rest). Every ``R``-th row is kept, and in each kept row every
``C``-th run of :data:`BLOCK` consecutive entries — a grid spread evenly over both dimensions, in runs of 64
bytes, so that keeping the subset reads a fraction of the tensor's cache lines rather than all of them (a
stride of single entries touched every line). A parameter keeps **every** row (``R`` = 1, at least one run
each, so up to ``rows`` × 16 entries, 16/``cols`` of the tensor): an embedding's gradient and update live only
in the rows of the tokens a batch holds, and a subset of rows missed or caught them by chance — on the GPT
sample the slope of the token embedding's update came out 0.15 off the exact one. A tensor sharded along its
first dimension (FSDP2) holds whole rows, and each rank keeps the grid's rows that fall in its range: the
sharded and the unsharded model measure exactly the same coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SAMPLE = 1 << 14
"""Default number of coordinates kept per tensor for differences (``size`` below)."""
BLOCK = 16
"""Consecutive entries kept together (64 bytes of float32: one cache line)."""


@dataclass(frozen=True)
class Positions:
    """The kept entries of one (local part of a) contiguous tensor: ``rows`` runs of rows, ``row_stride``
    entries apart, each holding ``blocks`` runs of ``block`` entries ``block_stride`` apart, the first at
    flat position ``start``."""

    start: int
    rows: int
    row_stride: int
    blocks: int
    block_stride: int
    block: int

    @property
    def count(self) -> int:
        return self.rows * self.blocks * self.block

    def take(self, local: torch.Tensor) -> torch.Tensor:
        """The kept entries of ``local`` as a view (a copy only when ``local`` is not contiguous)."""
        if not local.is_contiguous():
            local = local.contiguous()
        return local.as_strided((self.rows, self.blocks, self.block), (self.row_stride, self.block_stride, 1),
                                local.storage_offset() + self.start)


def positions(rows: int, cols: int, size: int | None, row_offset: int = 0, local_rows: int | None = None,
              *, every_row: bool = False) -> Positions | None:
    """The kept entries of a ``rows`` × ``cols`` tensor whose local part holds rows ``row_offset`` … (``local_rows``
    of them; all by default); None when every entry is kept (``size`` None, or no more entries than ``size``).
    ``every_row``: keep at least one run of every row (parameters, see the module docstring)."""
    numel = rows * cols
    if size is None or numel <= size or rows == 0 or cols == 0:
        return None
    block = min(BLOCK, cols)
    slots = cols // block  # runs of `block` entries that fit in a row
    fraction = math.sqrt(size / numel)  # the same fraction of rows and of a row's runs
    kept_rows = rows if every_row else min(rows, max(1, math.ceil(rows * fraction)))
    kept_slots = min(slots, max(1, math.ceil(size / (kept_rows * block))))
    row_stride = max(1, rows // kept_rows)
    slot_stride = max(1, slots // kept_slots)
    first_row = (row_stride - 1) // 2
    first_col = ((slot_stride - 1) // 2) * block
    blocks = (cols - block - first_col) // (slot_stride * block) + 1
    local = rows if local_rows is None else local_rows
    behind = max(0, row_offset - first_row)
    first = first_row + -(-behind // row_stride) * row_stride  # the first kept row at or after row_offset
    start_row = first - row_offset
    here = 0 if start_row >= local else (local - 1 - start_row) // row_stride + 1
    return Positions(start_row * cols + first_col, here, row_stride * cols, blocks, slot_stride * block, block)


def matrix(shape: tuple[int, ...], activation: bool = False) -> tuple[int, int]:
    """``rows, cols`` of a tensor's shape: a parameter's first dimension by the rest (FSDP2 shards it along
    the first), an activation's last dimension (the features) by the rest (the tokens)."""
    numel = math.prod(shape)
    if not shape:
        return 1, 1
    if activation:
        return numel // max(shape[-1], 1) if shape[-1] else 0, shape[-1]
    return shape[0], numel // shape[0] if shape[0] else 0
