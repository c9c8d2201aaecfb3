"""Built-in probes: ``rms`` (the default), ``l1`` (mean |x|, what the ``mup`` package plots), ``absmax``,
and ``spectral`` (a weight matrix's operator norm over √(fan_out/fan_in), the spectral condition's scale;
recorded for weights and updates only).

The first three are statistics of a whole tensor's entries ("the typical size of a coordinate"), so that
under μP they stay Θ(1) as width grows. They use only :func:`coordscope.register_probe` and the tensor.
"""

from __future__ import annotations

import torch

from coordscope.probe import ProbeContext, register_probe


@register_probe("rms")
def rms(x: torch.Tensor, ctx: ProbeContext) -> torch.Tensor:
    """Root mean square of the entries: the coordinate size μP theory speaks of.

    Why ``dot`` and not ``torch.linalg.vector_norm``: on CPU the norm kernel runs on one thread and
    accumulates sequentially; ``x·x`` goes to BLAS, which is 2.5× faster on a 4 MB weight and, with its
    blocked accumulators, more accurate too (relative error 1e-5 against 9e-5 at 4M entries). A strided
    tensor would have to be copied to be flattened, so it keeps the norm kernel.
    """
    n = x.numel()
    if n == 0:
        return x.new_zeros(())
    if x.is_contiguous():
        flat = x.view(-1)
        return torch.dot(flat, flat).mul_(1.0 / n).sqrt_()  # a float multiplier: cheaper than div_ by an int
    return torch.linalg.vector_norm(x) / n**0.5


@register_probe("l1")
def l1(x: torch.Tensor, ctx: ProbeContext) -> torch.Tensor:
    """Mean absolute value, as in ``mup.coord_check`` (so its plots can be reproduced)."""
    return x.abs().mean()


@register_probe("absmax")
def absmax(x: torch.Tensor, ctx: ProbeContext) -> torch.Tensor:
    """Largest absolute entry: catches a few coordinates blowing up while the mean looks fine."""
    return x.abs().amax() if x.numel() else x.new_zeros(())


POWER_ITERATIONS = 8
"""Power iterations from the fixed start vector: a weight, and a matrix's first update."""
WARM_ITERATIONS = 4
"""Power iterations for an update from the vector the previous step's update ended on (a warm start)."""
_START: dict[tuple[int, torch.device], torch.Tensor] = {}


def _start_vector(n: int, device: torch.device) -> torch.Tensor:
    """A fixed pseudo-random unit vector (the same every call, so steps and widths are comparable; never
    the all-ones vector, to which a centred matrix is blind)."""
    key = (n, device)
    if key not in _START:
        generator = torch.Generator().manual_seed(0)
        v = torch.randn(n, generator=generator)
        _START[key] = (v / v.norm()).to(device)
    return _START[key]


SPECTRAL_SITES = ("param", "param_update")
"""Where ``spectral`` is recorded: the weights and their updates (the spectral condition's two norms)."""


@register_probe("spectral", sites=SPECTRAL_SITES, first_step=("param",))
def spectral(x: torch.Tensor, ctx: ProbeContext) -> torch.Tensor | None:
    """‖W‖₂ / √(fan_out/fan_in) of a weight or update matrix; None (no row) for anything else.

    The spectral condition for feature learning (Yang, Simon & Bernstein 2023; the view Muon is built on)
    asks that every weight matrix and its update have operator norm Θ(√(fan_out/fan_in)): divided by that,
    the norm is flat in width under μP, whatever the optimizer. The norm comes from a fixed number of
    power iterations on the device (no host sync, no data-dependent stopping): :data:`POWER_ITERATIONS`
    from a fixed start for a weight and a matrix's first update, then :data:`WARM_ITERATIONS` from the
    vector the previous step's update of the same matrix ended on (``ctx.state``): a check's consecutive
    updates share their top direction, so 4 warm iterations measured as close as 8 cold ones at half the
    cost (``benchmarks/spectral_error.py`` against ``torch.linalg.matrix_norm(ord=2)``; docs/theory.md has
    the figures). Convolution kernels count as [out, in·k·k] matrices.
    A weight is measured at t = 0 only (``first_step``): power iterations on every matrix at every step cost
    more than a training step of an MLP at width 2048, and a check's few updates move ‖W‖₂ by at most
    ‖ΔW‖₂, which is measured (``coordscope check`` judges ‖ΔW_t‖₂/‖W_0‖₂). An update is measured where it is
    kept whole (matrices up to :data:`coordscope.stats.WHOLE_UPDATES` entries, or every one with
    ``exact=True``), and only for hidden matrices (both dimensions grow with width; every matrix while that is
    not known): the ratio is judged there only, since μP leaves an input or output matrix's free. A vector
    (bias, norm gain), an empty tensor and anything recorded at another site (activations, gradients) has no
    operator norm to speak of: the probe declares its sites and returns None for tensors with fewer than two
    dimensions, so no meaningless row is written.
    """
    if ctx.site not in SPECTRAL_SITES or x.dim() < 2 or x.numel() == 0:
        return None
    if ctx.site == "param_update" and ctx.scaling_dims is not None and not all(ctx.scaling_dims[:2]):
        return None  # an input or output matrix: μP leaves its ‖ΔW‖₂ free, and the check does not judge it
    matrix = x.reshape(x.shape[0], -1)
    fan_out, fan_in = matrix.shape
    start = _start_vector(fan_in, matrix.device)
    v, iterations = ctx.state.get("v"), WARM_ITERATIONS
    if v is None or v.shape != (fan_in,) or v.device != matrix.device:
        v, iterations = start, POWER_ITERATIONS
    else:  # a little of the fixed start: a previous update that was 0 (or not finite) left no direction
        v = torch.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0).add_(start, alpha=1e-3)
    # torch.mv and linalg.vector_norm, not `@` and Tensor.norm: the same kernels without their Python wrappers,
    # 257 against 318 µs for a warm 512 × 512 update on the 2-core CPU (bit-identical results)
    transposed, tiny = matrix.T, torch.finfo(v.dtype).tiny
    for _ in range(iterations):  # normalised every iteration: a diverging update (lr 1e12) overflows in two
        v = torch.mv(transposed, torch.mv(matrix, v))
        v = v / torch.linalg.vector_norm(v).clamp_min(tiny)
    if ctx.site == "param_update":
        ctx.state["v"] = v
    return torch.linalg.vector_norm(torch.mv(matrix, v)) / (fan_out / fan_in) ** 0.5
