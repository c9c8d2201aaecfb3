"""Recording under torchrun: which part of a tensor this rank holds, and one collective per step.

Every rank records; the statistics are those of the whole model and the whole batch. That works because the
probes coordscope can combine across ranks are built from sums and maxima (:mod:`coordscope.stats`): each
rank computes, for every statistic, a partial value over the entries it holds (Σx², Σ|x| or max|x|) and how
many entries that was; one ``all_gather`` per step moves every partial of every rank at once (never one
collective per tensor), and each rank adds them up (or takes the maximum). Who holds what:

- a parameter, gradient or update that is a ``DTensor`` (FSDP2's ``fully_shard``, tensor parallelism):
  this rank's shard; where a mesh dimension replicates it, only coordinate 0 of that dimension counts it;
- a plain parameter, gradient or update (DDP, or any replicated model): every rank holds the same values,
  so rank 0 counts them and the others skip the work;
- an activation, its change and its gradient: each rank's share of the batch, so every rank counts its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class World:
    """The default process group of a ``torchrun`` job, when it has more than one rank."""

    rank: int
    size: int
    device: torch.device

    def all_gather(self, vector: torch.Tensor) -> np.ndarray:
        """Every rank's ``vector`` (same length everywhere), as a float64 array [size, len]: one collective."""
        import torch.distributed as dist

        local = vector.to(self.device, torch.float64)
        out = torch.empty(self.size * local.numel(), dtype=torch.float64, device=self.device)
        dist.all_gather_into_tensor(out, local)
        return out.cpu().numpy().reshape(self.size, -1)

    def all_gather_objects(self, value: Any) -> list[Any]:
        """Every rank's picklable ``value`` (used once, to agree on what a step records)."""
        import torch.distributed as dist

        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, value)
        return out

    def broadcast_object(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def current_world() -> World | None:
    """The running process group (None outside torchrun, or with a single rank)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    backend = str(dist.get_backend())
    device = (torch.device("cuda", torch.cuda.current_device()) if backend == "nccl"
              else torch.device("cpu"))
    return World(dist.get_rank(), dist.get_world_size(), device)


@dataclass(frozen=True)
class Piece:
    """What this rank holds of a tensor: ``local`` values, which are the global tensor's rows (first
    dimension) from ``row_offset`` on — None when the local block is not a run of whole rows — the global
    ``shape``, and whether this rank counts it (``contributes``)."""

    local: torch.Tensor
    row_offset: int | None
    shape: tuple[int, ...]
    contributes: bool


def is_dtensor(t: torch.Tensor) -> bool:
    """Whether ``t`` is a ``torch.distributed.tensor.DTensor`` (without importing it when nothing is)."""
    return type(t).__name__ == "DTensor" and hasattr(t, "to_local")


def piece(t: torch.Tensor, world: World | None, replicated: bool) -> Piece:
    """This rank's part of ``t``. ``replicated``: a plain tensor holds the same values on every rank (a
    parameter, gradient or update); otherwise (an activation) it is this rank's share of the batch."""
    if is_dtensor(t):
        return _dtensor_piece(t)
    return Piece(t, 0, tuple(t.shape), world is None or not replicated or world.rank == 0)


def _dtensor_piece(t: Any) -> Piece:
    from torch.distributed.tensor import Replicate
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    local = t.to_local()
    mesh = t.device_mesh
    coordinate = mesh.get_coordinate() or [0] * mesh.ndim
    contributes = all(coordinate[i] == 0 for i, placement in enumerate(t.placements)
                      if isinstance(placement, Replicate) or placement.is_partial())
    shape = tuple(t.shape)
    local_shape, global_offset = compute_local_shape_and_global_offset(shape, mesh, t.placements)
    rows = tuple(local_shape[1:]) == shape[1:] and all(o == 0 for o in global_offset[1:])  # split on dim 0 only
    return Piece(local, int(global_offset[0]) if shape and rows else (0 if not shape else None), shape, contributes)


def unwrap(model: nn.Module) -> nn.Module:
    """The module a wrapper trains: DDP's (and DataParallel's) ``.module``, ``torch.compile``'s
    ``_orig_mod``; names then read as in the unwrapped model (FSDP2 does not wrap, it shards in place)."""
    while True:
        inner = getattr(model, "module", None) if type(model).__name__ in ("DistributedDataParallel",
                                                                           "DataParallel") else None
        inner = inner if inner is not None else getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner
