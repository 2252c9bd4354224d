"""Which device a run uses: ``--device`` checked, so a missing GPU is one clear line."""

from __future__ import annotations

import torch

from vlx.errors import InputError


def resolve_device(name: str) -> torch.device:
    """A torch device from ``--device``; asking for a missing GPU is a clear error."""
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise InputError(f"unknown device {name!r}; valid: cpu, cuda, cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return torch.device(name)
