"""LR-sweep specs: the GPT sample (:mod:`coordscope.sample_models.gpt`) trained on the stdlib corpus.

A coordinate check needs only one fixed batch of random tokens; a learning-rate sweep needs text with
structure, so that the loss at the optimum says something and a wider model can do better. These specs
stream windows of :mod:`coordscope.sample_models.corpus` (seeded by the job's seed, via ``torch.initial_seed()``) and
score each job on the same held-out windows. ``gpt-mup-sweep`` should transfer (the optimal LR does not
move with width); ``gpt-sp-sweep`` should not (under SP with Adam the optimum falls as width grows).

``DEFAULTS["sweep"]`` holds the grid ``coordscope sweep`` uses when no flags are given; the coord-check
settings stay coordscope's, so ``coordscope run gpt-mup-sweep`` is an ordinary short coord check.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from coordscope.sample_models import corpus, gpt
from coordscope.spec import Spec

BATCH = 16
SEQ_LEN = gpt.SEQ_LEN
HELDOUT_SEED = 1234  # every job is scored on the same held-out windows
# What `coordscope sweep gpt-*-sweep` runs without flags — the grid of `coordscope demo` too (a test keeps them
# equal). It brackets every width's optimum in SP and in μP; SP's shift (about −1.2 per doubling) is so far
# beyond tolerance that one seed decides it, μP's flat optimum takes two seeds to place firmly. One torch
# thread per worker process: on 2 cores both sweeps take 60–100 s together, depending on the machine's other
# load (benchmarks/demo.py), where the former grid (widths 32..256, 2^-11..2^-4, 200 steps, one seed,
# inline) took 218 s for μP alone and was inconclusive.
SWEEP_DEFAULTS = {"widths": [16, 32, 64, 128], "lrs": [2.0**e for e in range(-9, -3)], "steps": 100,
                  "executor": "processes"}
SEEDS = {"sp": 1, "mup": 2}


def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Training windows of the corpus; the order depends only on the job's seed (coordscope seeds torch)."""
    return corpus.batches("train", BATCH, SEQ_LEN, seed=torch.initial_seed())


def heldout() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Held-out windows of the corpus, the same for every job (the sweep takes the first few)."""
    return corpus.batches("heldout", BATCH, SEQ_LEN, seed=HELDOUT_SEED)


def zero_readout_and_queries(model: gpt.GPT) -> gpt.GPT:
    """TP5's recipe for μTransfer (App. D.2): zero-initialise the readout and the query projections.

    Then the logits and attention scores at initialisation are exactly 0 at every width, instead of
    random values whose size changes with width (the readout's 1/m multiplier, 1/d_head attention): a
    finite-width effect that otherwise nudges the optimal learning rate of small models upwards with width
    (see ``benchmarks/mutransfer.py``).
    """
    with torch.no_grad():
        model.lm_head.weight.zero_()
        for module in model.modules():
            if isinstance(module, gpt.CausalSelfAttention):  # q, k, v are stacked in c_attn
                module.c_attn.weight[: model.config.width].zero_()
    return model


def make_sweep_spec(parametrization: str) -> Spec:
    """The GPT sample in ``parametrization`` (``sp`` or ``mup``) with Adam, on the corpus; μP with TP5's
    zero-initialised readout and queries, SP as is."""

    def model(width: int) -> torch.nn.Module:
        net = gpt.build(width, parametrization)
        return zero_readout_and_queries(net) if parametrization == "mup" else net

    return Spec(
        model=model,
        batches=batches,
        heldout=heldout,
        optimizer=gpt.make_optimizer,
        defaults={"sweep": {**SWEEP_DEFAULTS, "seeds": SEEDS[parametrization]}},
        ref=f"gpt-{parametrization}-sweep",
        description=f"GPT, {parametrization}, Adam, on the stdlib character corpus",
    )


SP = make_sweep_spec("sp")
MUP = make_sweep_spec("mup")
