"""Built-in probes: ``rms`` (the default), ``l1`` (mean |x|, what the ``mup`` package plots), ``absmax``.

Each is a statistic of a whole tensor's entries ("the typical size of a coordinate"), so that under μP it
stays Θ(1) as width grows. They use only :func:`coordscope.register_probe` and the tensor itself.
"""

from __future__ import annotations

import torch

from coordscope.probe import ProbeContext, register_probe


@register_probe("rms")
def rms(x: torch.Tensor, ctx: ProbeContext) -> torch.Tensor:
    """Root mean square of the entries: the coordinate size μP theory speaks of."""
    return torch.linalg.vector_norm(x) / (x.numel() ** 0.5 if x.numel() else 1.0)


@register_probe("l1")
def l1(x: torch.Tensor, ctx: ProbeContext) -> torch.Tensor:
    """Mean absolute value, as in ``mup.coord_check`` (so its plots can be reproduced)."""
    return x.abs().mean()


@register_probe("absmax")
def absmax(x: torch.Tensor, ctx: ProbeContext) -> torch.Tensor:
    """Largest absolute entry: catches a few coordinates blowing up while the mean looks fine."""
    return x.abs().amax() if x.numel() else x.new_zeros(())
