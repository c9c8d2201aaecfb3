"""A tiny LR-sweep spec for the tests: a one-hidden-layer character model on the stdlib corpus.

Small enough that a sweep of a few widths and learning rates takes seconds, and a file, so that worker
processes and Ray tasks can import it by path. ``CRASHING`` is the same spec whose width-16 models kill
their own process (SIGKILL) at the third forward pass: a job dying mid-run.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import torch
from torch import nn

from coordscope.sample_models import corpus
from coordscope.spec import Spec

CRASH_WIDTH = 16


class CharMLP(nn.Module):
    """Embedding → ReLU → linear readout over the 128 character ids."""

    def __init__(self, width: int, crash: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(corpus.VOCAB, width)
        self.readout = nn.Linear(width, corpus.VOCAB)
        self.crash = crash
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.crash and self.calls == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.readout(torch.relu(self.embed(x)))


def model(width: int) -> nn.Module:
    return CharMLP(width)


def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    return corpus.batches("train", 4, 16, seed=torch.initial_seed())


def heldout() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    return corpus.batches("heldout", 4, 16, seed=0)


CRASHING = Spec(model=lambda width: CharMLP(width, crash=width == CRASH_WIDTH), batches=batches, heldout=heldout)
