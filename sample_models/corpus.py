"""A character-level text corpus that needs no download: the Python standard library's own sources.

A learning-rate sweep has to train on real data, with structure a wider model can learn better, or the
"wider is better" half of μTransfer cannot show. Every Python installation ships a few megabytes of
``.py`` text, so we read the top-level ``*.py`` files of ``sysconfig.get_paths()["stdlib"]`` in sorted
order up to a fixed byte budget. The same Python version gives the same bytes, so a sweep is reproducible
without fetching anything. Bytes are clipped to 0..127 (non-ASCII bytes all become 127), giving a
vocabulary of :data:`VOCAB` = 128 ids, the GPT sample's.

The text is cut into blocks of :data:`BLOCK` bytes; every :data:`HELDOUT_EVERY`-th block is held out, so the
held-out split covers the same files as the training split but never the same characters.
"""

from __future__ import annotations

import functools
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import torch

from coordscope.errors import ConfigError

VOCAB = 128
BUDGET = 2_000_000  # bytes read from the stdlib sources
BLOCK = 4096  # bytes per block of the train / held-out interleaving
HELDOUT_EVERY = 10  # every 10th block is held out (10 % of the text)
SPLITS = ("train", "heldout")


def source_files(root: Path | None = None) -> list[Path]:
    """The top-level ``*.py`` files of the standard library, sorted by name (deterministic order)."""
    root = Path(sysconfig.get_paths()["stdlib"]) if root is None else root
    return sorted(p for p in root.glob("*.py") if p.is_file())


@functools.lru_cache(maxsize=4)
def text(budget: int = BUDGET) -> torch.Tensor:
    """The first ``budget`` bytes of the concatenated stdlib sources as uint8 ids in 0..127.

    Cached per process only (a few MB): nothing is written anywhere.
    """
    chunks: list[bytes] = []
    total = 0
    for path in source_files():
        data = path.read_bytes()
        chunks.append(data[: budget - total])
        total += len(chunks[-1])
        if total >= budget:
            break
    if total < 2 * BLOCK * HELDOUT_EVERY:
        raise ConfigError(f"the standard library sources gave only {total} bytes; the corpus needs more")
    ids = torch.frombuffer(bytearray(b"".join(chunks)), dtype=torch.uint8)
    return ids.clamp(max=VOCAB - 1)


@functools.lru_cache(maxsize=8)
def split(name: str, budget: int = BUDGET) -> torch.Tensor:
    """The ids of one split (``train`` or ``heldout``) as int64, blocks in their original order."""
    if name not in SPLITS:
        raise ConfigError(f"unknown corpus split {name!r} (choose from {', '.join(SPLITS)})")
    ids = text(budget)
    n_blocks = len(ids) // BLOCK
    blocks = ids[: n_blocks * BLOCK].view(n_blocks, BLOCK)
    held = torch.arange(n_blocks) % HELDOUT_EVERY == HELDOUT_EVERY - 1
    chosen = blocks[held] if name == "heldout" else blocks[~held]
    return chosen.reshape(-1).long()


def batches(name: str, batch: int, seq_len: int, seed: int,
            budget: int = BUDGET) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An endless stream of ``(x, y)`` windows of ``split(name)``: x is ``(batch, seq_len)`` ids and y is x
    shifted by one character. Window starts are drawn by a generator seeded with ``seed`` alone, so the
    stream does not depend on (or disturb) torch's global random state."""
    if batch < 1 or seq_len < 1:
        raise ConfigError(f"batch and seq_len must be positive, got batch={batch}, seq_len={seq_len}")
    ids = split(name, budget)
    generator = torch.Generator().manual_seed(seed)
    offsets = torch.arange(seq_len + 1)
    while True:
        starts = torch.randint(0, len(ids) - seq_len - 1, (batch, 1), generator=generator)
        window = ids[starts + offsets]
        yield window[:, :-1], window[:, 1:]
