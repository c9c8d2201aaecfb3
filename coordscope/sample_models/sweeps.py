"""LR-sweep specs: the GPT sample (:mod:`coordscope.sample_models.gpt`) trained on the stdlib corpus.

A coordinate check needs only one fixed batch of random tokens; a learning-rate sweep needs text with
structure, so that the loss at the optimum says something and a wider model can do better. These specs
stream windows of :mod:`coordscope.corpus` (seeded by the job's seed, via ``torch.initial_seed()``) and
score each job on the same held-out windows. ``gpt-mup-sweep`` should transfer (the optimal LR does not
move with width); ``gpt-sp-sweep`` should not (under SP with Adam the optimum falls as width grows).

``DEFAULTS["sweep"]`` holds the grid ``coordscope sweep`` uses when no flags are given; the coord-check
settings stay coordscope's, so ``coordscope run gpt-mup-sweep`` is an ordinary short coord check.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from coordscope import corpus
from coordscope.sample_models import gpt
from coordscope.spec import Spec

BATCH = 16
SEQ_LEN = gpt.SEQ_LEN
HELDOUT_SEED = 1234  # every job is scored on the same held-out windows
SWEEP_DEFAULTS = {"widths": [32, 64, 128, 256], "lrs": [2.0**e for e in range(-12, -3)], "steps": 200,
                  "seeds": 1}


def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Training windows of the corpus; the order depends only on the job's seed (coordscope seeds torch)."""
    return corpus.batches("train", BATCH, SEQ_LEN, seed=torch.initial_seed())


def heldout() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Held-out windows of the corpus, the same for every job (the sweep takes the first few)."""
    return corpus.batches("heldout", BATCH, SEQ_LEN, seed=HELDOUT_SEED)


def make_sweep_spec(parametrization: str) -> Spec:
    """The GPT sample in ``parametrization`` (``sp`` or ``mup``) with Adam, on the corpus."""

    def model(width: int) -> torch.nn.Module:
        return gpt.build(width, parametrization)

    return Spec(
        model=model,
        batches=batches,
        heldout=heldout,
        optimizer=gpt.make_optimizer,
        defaults={"sweep": SWEEP_DEFAULTS},
        ref=f"gpt-{parametrization}-sweep",
        description=f"GPT, {parametrization}, Adam, on the stdlib character corpus",
    )


SP = make_sweep_spec("sp")
MUP = make_sweep_spec("mup")
