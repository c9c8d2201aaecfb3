"""Where a job's tensors live: the device and dtype it asked for, checked before any run directory is
made, and the seeding that makes a job's initialisation and data the same for the same seed."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from coordscope.choices import DTYPES
from coordscope.errors import ConfigError

TORCH_DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in DTYPES}


def check_dtype(dtype: Any) -> str:
    """A dtype name coordscope can train in."""
    if dtype not in TORCH_DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
    return str(dtype)


def check_device(device: Any) -> str:
    """A torch device this machine has: ``cpu``, ``cuda``, ``cuda:1``, ``mps``… A device that does not
    parse, or that no driver here provides (``cuda`` on a CPU-only install), is refused in one line."""
    if not isinstance(device, str) or not device:
        raise ConfigError(f"device must be a torch device name such as cpu or cuda, got {device!r}")
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device {device!r} is not a torch device (e.g. cpu, cuda, cuda:1, mps)") from None
    if parsed.type == "cpu":
        return device
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r}: this torch build or machine has no usable CUDA device "
                              f"(torch {torch.__version__}); use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
        return device
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r}: MPS is not available on this machine; use --device cpu")
    return device


def seed_everything(seed: int, device: torch.device | str = "cpu") -> None:
    """Seed torch, numpy and ``random`` so model init and data are the same for the same seed.

    For a job on the CPU only the CPU generator is seeded. ``torch.manual_seed`` also queues a seeding
    of every CUDA device, and where CUDA is not initialised it records a stack trace for that call each
    time, which cost more per job than a small width's whole training step here.
    """
    if torch.device(device).type == "cpu":
        torch.random.default_generator.manual_seed(seed)
    else:
        torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def to_device(batch: Any, device: torch.device | str, dtype: torch.dtype) -> Any:
    """Move the tensors of a batch (nested tuples, lists, dicts) to ``device``; floats to ``dtype``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, dtype) if batch.is_floating_point() else batch.to(device)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device, dtype) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(v, device, dtype) for v in batch)
    return batch
