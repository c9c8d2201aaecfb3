"""The stdlib character corpus: deterministic, ASCII ids, disjoint splits, shifted targets, seeded streams."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from coordscope.errors import ConfigError
from coordscope.sample_models import corpus


def test_text_is_ascii_ids_of_the_sorted_stdlib_sources() -> None:
    ids = corpus.text()
    assert ids.dtype == torch.uint8 and len(ids) == corpus.BUDGET
    assert int(ids.max()) <= corpus.VOCAB - 1
    first = corpus.source_files()[0].read_bytes()[:1000]
    assert bytes(ids[:1000].tolist()) == bytes(min(b, 127) for b in first)


def test_splits_interleave_blocks_without_sharing_any() -> None:
    ids = corpus.text().long()
    train, held = corpus.split("train"), corpus.split("heldout")
    n_blocks = len(ids) // corpus.BLOCK
    assert len(train) + len(held) == n_blocks * corpus.BLOCK
    assert len(held) == (n_blocks // corpus.HELDOUT_EVERY) * corpus.BLOCK
    block = corpus.HELDOUT_EVERY - 1  # the first held-out block
    assert torch.equal(held[: corpus.BLOCK], ids[block * corpus.BLOCK : (block + 1) * corpus.BLOCK])
    assert torch.equal(train[: block * corpus.BLOCK], ids[: block * corpus.BLOCK])
    assert torch.equal(train[block * corpus.BLOCK : (block + 1) * corpus.BLOCK],
                       ids[(block + 1) * corpus.BLOCK : (block + 2) * corpus.BLOCK])


def test_batches_are_windows_with_targets_shifted_by_one() -> None:
    x, y = next(corpus.batches("train", 3, 20, seed=0))
    assert x.shape == y.shape == (3, 20) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    train = corpus.split("train")
    for row in range(3):  # each row is a contiguous window of the training text
        starts = (train[: len(train) - 20] == x[row, 0]).nonzero().flatten()
        assert any(torch.equal(train[s : s + 20], x[row]) for s in starts.tolist())


def test_streams_depend_on_the_seed_alone() -> None:
    state = torch.get_rng_state()
    a = [b[0] for b, _ in zip(corpus.batches("train", 2, 8, seed=5), range(3), strict=False)]
    torch.manual_seed(999)  # the global generator does not matter
    b = [b[0] for b, _ in zip(corpus.batches("train", 2, 8, seed=5), range(3), strict=False)]
    c = next(corpus.batches("train", 2, 8, seed=6))[0]
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not torch.equal(a[0], c)
    torch.set_rng_state(state)


def test_same_bytes_in_a_fresh_process() -> None:
    code = "from coordscope.sample_models import corpus; print(int(corpus.split('heldout').sum()), len(corpus.split('train')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert [int(v) for v in out] == [int(corpus.split("heldout").sum()), len(corpus.split("train"))]


def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="split"):
        corpus.split("test")
    with pytest.raises(ConfigError, match="positive"):
        next(corpus.batches("train", 0, 8, seed=0))
