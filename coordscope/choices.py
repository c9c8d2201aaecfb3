"""The closed sets of names a user picks from (executors, dtypes, report formats, sweep metrics).

They live here, free of heavy imports, so the command line can offer them as choices and print ``--help``
without importing torch, and the modules that act on them check against the same tuples.
"""

from __future__ import annotations

EXECUTORS: tuple[str, ...] = ("inline", "processes", "ray")
DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16", "float64")
FORMATS: tuple[str, ...] = ("text", "json", "junit", "markdown")
SWEEP_FORMATS: tuple[str, ...] = ("text", "json")
SWEEP_METRICS: tuple[str, ...] = ("heldout", "train")
SITES: tuple[str, ...] = ("act", "act_delta", "act_grad", "param", "param_grad", "param_update", "loss")
"""The store's sites (DESIGN.md): a module's output x_t, x_t − x_0, dLoss/dx, W_t, its gradient, W_{t+1} − W_t,
and the loss."""
